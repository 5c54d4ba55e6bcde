"""The vendor page's submit form, drawn from the job-type table: a fieldset per job type, a field per option.

Each field takes its kind, bounds, choices and default from the option's
checker in the job type's schema (``imgproc.optiontypes.form_of``), so the
form asks what the API accepts; only the words around it are the page's own,
keyed by option name. A preset's choice carries the
checkboxes it sets, and the fields it sets are marked, whichever table of
presets (ID photos, marketplaces) the job type's ``preset`` names.
``operations()`` is what the scripts get (common.js: each job type's title
and endpoints), in a JSON block of the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgproc.config import Settings
from imgproc.jobtypes import JOB_TYPES, JobType
from imgproc.optiontypes import form_of
from imgproc.presets import MARKETPLACES, PRESETS, marketplace_options, preset_options

#: The page's words for an option; one not here is its name, spelled out ("strip_metadata": "Strip metadata").
LABELS = {
    "model": "Model",
    "bgcolor": "Background colour",
    "max_size": "Longest side (px)",
    "alpha_matting": "Alpha matting (finer hair edges)",
    "post_process_mask": "Smooth the mask's edges",
    "crop": "Crop to the subject",
    "crop_margin": "Margin around the subject",
    "canvas": "Canvas (output size)",
    "scale": "Subject's size, of the canvas",
    "position": "Place on the canvas",
    "bg_image_url": "Background photo URL",
    "bg_blur": "Blur the photo's own background (px)",
    "shadow": "Soft shadow under the subject",
    "keep_alpha": "A photo's own transparency",
    "channels": "Output",
    "size": "Output size",
    "face_height": "Face height, of the output",
    "face_center_y": "Face centre, from the top",
    "remove_background": "Also remove the background",
    "select": "Which face",
    "upscale": "Enlarge a small face",
    "max_kb": "Largest file (KB)",
    "sheet": "Copies on a 4×6 in sheet",
    "resize": "Resize to",
    "quality": "Quality",
}
#: What an empty field means, where its default (the placeholder otherwise) does not say.
PLACEHOLDERS = {
    "max_size": "as is",
    "max_kb": "no limit",
    "size": "W×H px, e.g. 300x400",
    "resize": "W×H px, e.g. 256x256",
    "canvas": "as cut, or W×H px: 2000x2000",
    "crop_margin": "none, or 5%, 12px 24px…",
    "scale": "fit inside, or 85%",
    "position": "center, top, bottom or 50% 100%",
    "bg_image_url": "https://… (cover the output)",
    "bg_blur": "no blur",
}
#: A ``preset`` field's label, hint (a field with one takes the whole width, first) and empty choice, by
#: the table its presets are in: a face crop's name ID photos, a background removal's marketplaces.
PRESET_WORDS = {
    "id": (
        "ID-photo preset",
        "A preset sets the size, head position, background and format.",
        "None: choose the shape below",
    ),
    "marketplace": (
        "Marketplace preset",
        "A preset sets the canvas, the subject's size and place, the background and the format, and "
        "reports whether the result meets the marketplace's rules.",
        "None: lay it out below",
    ),
}
#: The words of a choice where its value alone says too little.
CHOICE_TEXTS = {
    ("format", "zip"): "zip: color.jpg + alpha.png",
    ("channels", "rgba"): "the cut-out (RGBA)",
    ("channels", "alpha"): "the mask alone (greyscale PNG)",
    ("keep_alpha", "never"): "cut it again",
    ("keep_alpha", "auto"): "keep it, where there is one",
}
#: The checkbox that sets an optional colour (a colour input has no empty value).
COLOUR_SWITCHES = {"bgcolor": "Fill the background"}
#: Options under "More options", folded away: the rest are what most jobs set.
MORE = frozenset(
    "alpha_matting post_process_mask face_height face_center_y select upscale max_kb sheet".split()
)
MORE |= {"strip_metadata", "position", "bg_image_url", "bg_blur", "keep_alpha", "channels"}


def _words(option: str, form: dict[str, Any]) -> tuple[str | None, str, str]:
    """An option's label (None: its name, spelled out), hint and empty choice."""
    if option == "preset" and form.get("choices"):
        table = "marketplace" if all(name in MARKETPLACES for name in form["choices"]) else "id"
        return PRESET_WORDS[table]
    return LABELS.get(option), "", "none"


def preset_sets(name: str) -> dict[str, Any]:
    """The options the preset ``name`` sets, whichever table it is in (an ID photo's, a marketplace's)."""
    if name in PRESETS:
        return preset_options(PRESETS[name])
    if name in MARKETPLACES:
        return marketplace_options(MARKETPLACES[name])
    return {}


def _preset_text(name: str) -> str:
    if name in PRESETS:
        preset = PRESETS[name]
        return f"{preset.title} ({preset.pixels[0]}×{preset.pixels[1]} px)"
    return MARKETPLACES[name].title if name in MARKETPLACES else name


@dataclass(frozen=True)
class Field:
    """One option's form field."""

    option: str
    id: str
    label: str
    #: The checker's kind: bool, color, choice, int, number, size, aspect, text, url.
    kind: str
    default: Any
    min: float | None = None
    max: float | None = None
    #: ``(value, text)`` of a choice, the empty one first when the option is unset by default.
    choices: list[tuple[str, str]] = field(default_factory=list)
    placeholder: str = ""
    hint: str = ""
    #: The id and words of the checkbox that sets an optional colour.
    switch: tuple[str, str] | None = None
    #: Whether a chosen preset sets it.
    preset_sets: bool = False
    #: Of a preset choice: preset name -> the checkboxes it sets, which vendor.js ticks when it is chosen.
    preset_checks: dict[str, dict[str, bool]] = field(default_factory=dict)

    @property
    def script_kind(self) -> str:
        """How vendor.js reads its value (``data-kind``): a text field's value is sent as it is."""
        return {"bool": "bool", "int": "int", "number": "number", "size": "size"}.get(self.kind, "")

    @property
    def wide(self) -> bool:
        """Whether it takes the row's whole width: one with a hint, or an address."""
        return bool(self.hint) or self.kind == "url"


@dataclass(frozen=True)
class Fieldset:
    name: str
    title: str
    fields: list[Field]
    more: list[Field]


def _choices(option: str, allowed: list[str], default: Any, unset: str) -> list[tuple[str, str]]:
    found = [
        (value, _preset_text(value) if option == "preset" else CHOICE_TEXTS.get((option, value), value))
        for value in allowed
    ]
    return [("", unset), *found] if default is None else found


def _field(jt: JobType, option: str, default: Any, form: dict[str, Any], sets: frozenset[str]) -> Field:
    kind = form["kind"]
    id_ = f"{jt.name}-{option}".replace("_", "-")
    label, hint, unset = _words(option, form)
    label = label or option.replace("_", " ").capitalize()
    shown_default = "×".join(map(str, default)) if isinstance(default, list) else default
    checks = {}
    if option == "preset" and kind == "choice":
        for name in form["choices"]:
            checks[name] = {k: v for k, v in preset_sets(name).items() if isinstance(v, bool)}
    return Field(
        option=option,
        id=id_,
        label=label,
        kind=kind,
        default=default,
        min=form.get("min"),
        max=form.get("max"),
        choices=_choices(option, form["choices"], default, unset) if kind == "choice" else [],
        placeholder=PLACEHOLDERS.get(option, "" if default is None else str(shown_default)),
        hint=hint,
        switch=(f"{id_}-on", COLOUR_SWITCHES.get(option, f"Set the {label.lower()}"))
        if kind == "color" and default is None
        else None,
        preset_sets=option in sets,
        preset_checks=checks,
    )


def fieldsets(settings: Settings) -> list[Fieldset]:
    """A fieldset for each job type, its options in the order of its schema."""
    found = []
    for jt in JOB_TYPES.values():
        schema = jt.schema(settings)
        # The options its presets set: of the presets its own ``preset`` option may name.
        presets = form_of(schema["preset"][0]).get("choices", []) if "preset" in schema else []
        sets = frozenset(name for preset in presets for name in preset_sets(preset))
        fields = [
            _field(jt, name, default, form_of(check), sets) for name, (check, default) in schema.items()
        ]
        # Full-width fields first, then the ones taking a value, then the checkboxes and colours.
        fields.sort(key=lambda f: 0 if f.hint else 2 if f.kind in ("bool", "color") else 1)
        found.append(
            Fieldset(
                jt.name,
                jt.title,
                [f for f in fields if f.option not in MORE],
                [f for f in fields if f.option in MORE],
            )
        )
    return found


def operations() -> dict[str, dict[str, str]]:
    """Job type -> its title and endpoints, for the scripts (``imgproc.OPERATIONS`` in common.js)."""
    return {
        jt.name: {"label": jt.title, "single": jt.single_endpoint, "bulk": jt.bulk_endpoint}
        for jt in JOB_TYPES.values()
    }
