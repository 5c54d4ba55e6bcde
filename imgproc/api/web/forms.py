"""The vendor page's submit form, drawn from the job-type table: a fieldset per job type, a field per option.

Each field takes its kind, bounds, choices and default from the option's
checker in the job type's schema (``imgproc.optiontypes.form_of``), so the
form asks what the API accepts; only the words around it are the page's own,
keyed by option name. ``operations()`` is what the scripts get (common.js:
each job type's title and endpoints), in a JSON block of the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgproc.config import Settings
from imgproc.jobtypes import JOB_TYPES, JobType
from imgproc.optiontypes import form_of
from imgproc.presets import PRESETS, preset_options

#: The page's words for an option; one not here is its name, spelled out ("strip_metadata": "Strip metadata").
LABELS = {
    "model": "Model",
    "bgcolor": "Background colour",
    "max_size": "Longest side (px)",
    "alpha_matting": "Alpha matting (finer hair edges)",
    "post_process_mask": "Smooth the mask's edges",
    "preset": "ID-photo preset",
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
}
#: A hint under a field (a field with one takes the whole width, first).
HINTS = {"preset": "A preset sets the size, head position, background and format."}
#: The empty choice of an option that is unset unless chosen.
UNSET_CHOICES = {"preset": "None: choose the shape below"}
#: The checkbox that sets an optional colour (a colour input has no empty value).
COLOUR_SWITCHES = {"bgcolor": "Fill the background"}
#: Options under "More options", folded away: the rest are what most jobs set.
MORE = frozenset(
    "alpha_matting post_process_mask face_height face_center_y select upscale max_kb sheet".split()
)
MORE |= {"strip_metadata"}
#: The options a preset sets: with a preset chosen the page sends none of them but the checkboxes.
PRESET_SETS = frozenset(preset_options(next(iter(PRESETS.values())))) if PRESETS else frozenset()


@dataclass(frozen=True)
class Field:
    """One option's form field."""

    option: str
    id: str
    label: str
    #: The checker's kind: bool, color, choice, int, number, size, aspect.
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

    @property
    def script_kind(self) -> str:
        """How vendor.js reads its value (``data-kind``): a text field's value is sent as it is."""
        return {"bool": "bool", "int": "int", "number": "number", "size": "size"}.get(self.kind, "")


@dataclass(frozen=True)
class Fieldset:
    name: str
    title: str
    fields: list[Field]
    more: list[Field]


def _choices(option: str, allowed: list[str], default: Any) -> list[tuple[str, str]]:
    texts = {name: f"{p.title} ({p.pixels[0]}×{p.pixels[1]} px)" for name, p in PRESETS.items()}
    found = [(value, texts.get(value, value) if option == "preset" else value) for value in allowed]
    return [("", UNSET_CHOICES.get(option, "none")), *found] if default is None else found


def _field(jt: JobType, option: str, default: Any, form: dict[str, Any], has_preset: bool) -> Field:
    kind = form["kind"]
    id_ = f"{jt.name}-{option}".replace("_", "-")
    label = LABELS.get(option, option.replace("_", " ").capitalize())
    shown_default = "×".join(map(str, default)) if isinstance(default, list) else default
    return Field(
        option=option,
        id=id_,
        label=label,
        kind=kind,
        default=default,
        min=form.get("min"),
        max=form.get("max"),
        choices=_choices(option, form["choices"], default) if kind == "choice" else [],
        placeholder=PLACEHOLDERS.get(option, "" if default is None else str(shown_default)),
        hint=HINTS.get(option, ""),
        switch=(f"{id_}-on", COLOUR_SWITCHES.get(option, f"Set the {label.lower()}"))
        if kind == "color" and default is None
        else None,
        preset_sets=has_preset and option in PRESET_SETS,
    )


def fieldsets(settings: Settings) -> list[Fieldset]:
    """A fieldset for each job type, its options in the order of its schema."""
    found = []
    for jt in JOB_TYPES.values():
        schema = jt.schema(settings)
        fields = [
            _field(jt, name, default, form_of(check), "preset" in schema)
            for name, (check, default) in schema.items()
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
