"""The one table of job types, and the typed ``Payload`` the API hands a worker.

A job type is everything the service knows about one kind of work: its API
name and endpoints, its queue, the operation that does it, its options, the
models a worker loads for it, the file-name suffix of its results and the
records column they are written to. Adding a job type is one ``JobType`` in
``JOB_TYPES`` plus its function in ``imgproc.processing.operations`` (the
README's "Adding a job type" walks through it): the page draws its form from
the schemas, and the Python client's copy is written by ``python -m
imgproc.clientgen`` (a test fails until it is).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import optiontypes as o
from .config import Settings
from .errors import InvalidOptions, PermanentError
from .presets import MARKETPLACES, PRESETS, marketplace_options, preset_options

#: Queue names, as in the original Node/Bull system.
QUEUE_BG = "bg-removal"
QUEUE_FACE = "face-crop"
QUEUE_LIGHT = "image-processing"
#: Every image queue, in a worker's default priority order.
QUEUES = (QUEUE_BG, QUEUE_FACE, QUEUE_LIGHT)
#: Webhook deliveries: a queue of their own, served by their own workers, so that a slow
#: receiver never holds an image worker.
QUEUE_WEBHOOKS = "webhooks"
ALL_QUEUES = (*QUEUES, QUEUE_WEBHOOKS)

#: Models a worker can hold (``imgproc.processing.models``); a job type names those it needs.
MATTING = "matting"  # background removal: ISNet and the other rembg models
FACE = "face"  # BlazeFace

#: The RQ function of every job: rq stores this path in Redis with each job.
TASK = "imgproc.worker.tasks.run"
#: The RQ functions of the webhooks queue: a delivery, and a batch's completion (enqueued by name, so
#: that the API never imports the worker).
TASK_DELIVER = "imgproc.worker.webhooks.deliver"
TASK_COMPLETE_BATCH = "imgproc.worker.webhooks.complete_batch"


@dataclass(frozen=True)
class JobType:
    """One kind of work, from its endpoints down to its records column."""

    #: API name, also in the job's status (``type``) and in the Payload.
    name: str
    queue: str
    #: Name of its function in ``imgproc.processing.operations``: ``(data, options, tools) -> Output``.
    operation: str
    #: Its options: name -> (checker, default); built from ``Settings`` (the models a deployment has).
    schema: Callable[[Settings], o.Schema]
    #: Result file names end in ``-<suffix>.<format>``.
    suffix: str
    #: Column of the records table that gets its result URL.
    column: str
    #: ``POST /api/image-queue/<single_endpoint>`` and ``/<bulk_endpoint>``.
    single_endpoint: str
    bulk_endpoint: str
    #: What it does, in the page's words (the operation's name on the vendor's and operator's pages).
    title: str
    #: Models a worker on its queue loads at start-up.
    models: frozenset[str] = frozenset()
    #: Whether a job of these (validated) options runs the background-removal model: each such job
    #: counts against the background-removal limit, whatever its endpoint.
    runs_matting: Callable[[dict], bool] = lambda options: False
    #: Checks between options, after each was checked alone: ``(given, validated) -> None``.
    cross_check: Callable[[dict, dict], None] | None = None

    def defaults(self, settings: Settings) -> dict[str, Any]:
        """Every option's default: what a job queued before an option existed runs with."""
        return {name: default for name, (_, default) in self.schema(settings).items()}

    @property
    def names_model(self) -> bool:
        """Whether its results may name the model that made them (``model``: the matting model's)."""
        return MATTING in self.models


def _remove_bg_schema(settings: Settings) -> o.Schema:
    return {
        "preset": (o.choice(*MARKETPLACES), None),
        "model": (o.choice(*settings.bg_models), settings.bg_model),
        "format": (o.choice("png", "webp", "jpg", "zip"), "png"),
        "bgcolor": (o.color, None),
        "alpha_matting": (o.boolean, False),
        "post_process_mask": (o.boolean, False),
        "max_size": (o.whole(16, o.MAX_SIDE), None),
        # Cut-outs to a spec (API.md): the layout, one resample from the photo to the canvas.
        "crop": (o.boolean, False),
        "crop_margin": (o.margin, None),
        "canvas": (o.size(settings.max_output_pixels), None),
        "scale": (o.percent(0.01, 1.0), None),
        "position": (o.position, "center"),
        "bg_image_url": (o.url, None),
        "bg_blur": (o.whole(1, 100), None),
        "shadow": (o.boolean, False),
        "keep_alpha": (o.choice("never", "auto"), "never"),
        "channels": (o.choice("rgba", "alpha"), "rgba"),
    }


#: Pairs of remove-bg options that ask for two different things, and why they cannot be both.
_CONTRADICTIONS = (
    ("channels", "bgcolor", "the mask alone has no background to colour"),
    ("channels", "bg_image_url", "the mask alone has no background"),
    ("channels", "bg_blur", "the mask alone has no background"),
    ("channels", "shadow", "the mask alone is the subject's alpha, with no shadow"),
    ("bg_image_url", "bg_blur", "the background is either another photo or the photo's own, blurred"),
    ("bgcolor", "bg_image_url", "the background is either a colour or a photo"),
    ("bgcolor", "bg_blur", "the background is either a colour or the photo's own, blurred"),
)


def _remove_bg_check(given: dict, result: dict) -> None:
    if result["preset"]:
        # The preset's layout where the job gave none of it (API.md: options beside it override it).
        for name, value in marketplace_options(MARKETPLACES[result["preset"]]).items():
            if name not in given:
                result[name] = value
        if given.get("bg_image_url") or given.get("bg_blur") or given.get("channels") == "alpha":
            result["bgcolor"] = given.get("bgcolor")  # the job's own background, not the preset's colour
        if given.get("channels") == "alpha" and "format" not in given:
            result["format"] = "png"
    for first, second, why in _CONTRADICTIONS:
        if given.get(first) not in (None, False, "rgba") and given.get(second) not in (None, False):
            raise InvalidOptions(first, f"cannot be used together: {why}", also=second)
    if result["channels"] == "alpha" and "format" in given and result["format"] != "png":
        raise InvalidOptions("format", "cannot be used together: the mask alone is a PNG", also="channels")
    opaque = result["bgcolor"] or result["bg_image_url"] or result["bg_blur"]
    if result["format"] == "jpg" and not opaque:
        raise InvalidOptions("bgcolor", "is needed with format jpg, which has no transparency")
    if result["format"] == "zip" and (result["bg_image_url"] or result["bg_blur"]):
        what = "bg_image_url" if result["bg_image_url"] else "bg_blur"
        raise InvalidOptions(
            "format", "cannot be used together: a zip holds a transparent cut-out", also=what
        )
    if result["crop_margin"] and not (result["crop"] or result["scale"]):
        raise InvalidOptions("crop_margin", "needs crop (or scale): it is the margin kept around the subject")


def _crop_face_schema(settings: Settings) -> o.Schema:
    return {
        "aspect": (o.aspect, "3:4"),
        "size": (o.size(settings.max_output_pixels), None),
        "face_height": (o.fraction(0.05, 1.0), 0.5),
        "face_center_y": (o.fraction(0.0, 1.0), 0.42),
        "remove_background": (o.boolean, False),
        "bgcolor": (o.color, "#ffffff"),
        "format": (o.choice("jpg", "png", "webp"), "jpg"),
        "select": (o.choice("largest", "most_confident"), "largest"),
        "upscale": (o.boolean, True),
        "preset": (o.choice(*PRESETS), None),
        "max_kb": (o.whole(1, 100_000), None),
        "sheet": (o.boolean, False),
    }


def _crop_face_check(given: dict, result: dict) -> None:
    if result["sheet"] and not result["preset"]:
        raise InvalidOptions("sheet", "needs a preset (the size of each copy on paper)")
    if result["sheet"] and not PRESETS[result["preset"]].fits_sheet:
        raise InvalidOptions("sheet", f"a {result['preset']} photo does not fit on a 4x6 in sheet")
    if result["preset"]:
        # The preset's values where the job gave none; the head's geometry is the preset's
        # unless face_height or face_center_y is given (then the report says what no longer holds).
        for name, value in preset_options(PRESETS[result["preset"]]).items():
            if name not in given:
                result[name] = value
        for name in ("face_height", "face_center_y"):
            if name not in given:
                result[name] = None
        if "aspect" in given and "size" not in given:
            height = result["size"][1]
            result["size"] = [max(1, round(height * o.aspect_ratio(result["aspect"]))), height]
            return
    if result["size"]:
        w, h = result["size"]
        if "aspect" in given and abs(o.aspect_ratio(result["aspect"]) - w / h) > 0.01:
            raise InvalidOptions("size", f"{w}x{h} does not have the aspect {result['aspect']}")
        o.within_aspect("size", w / h)
        result["aspect"] = f"{w}:{h}"  # size alone decides the shape


def _process_image_schema(settings: Settings) -> o.Schema:
    return {
        "resize": (o.size(settings.max_output_pixels), None),
        "fit": (o.choice("contain", "cover"), "contain"),
        "format": (o.choice("jpg", "png", "webp"), "jpg"),
        "quality": (o.whole(1, 100), 85),
        "strip_metadata": (o.boolean, True),
    }


JOB_TYPES: dict[str, JobType] = {
    jt.name: jt
    for jt in (
        JobType(
            "remove-bg",
            QUEUE_BG,
            "remove_background",
            _remove_bg_schema,
            suffix="bg",
            column="bg_removed_url",
            single_endpoint="remove-bg-queue",
            bulk_endpoint="bulk-remove-bg",
            title="Remove background",
            models=frozenset({MATTING}),
            runs_matting=lambda options: True,
            cross_check=_remove_bg_check,
        ),
        JobType(
            # The matting model too: a crop may ask for remove_background.
            "crop-face",
            QUEUE_FACE,
            "crop_face",
            _crop_face_schema,
            suffix="face",
            column="face_crop_url",
            single_endpoint="crop-face-queue",
            bulk_endpoint="bulk-crop-face",
            title="Crop to the face",
            models=frozenset({FACE, MATTING}),
            runs_matting=lambda options: options["remove_background"],  # a preset's too: it sets it
            cross_check=_crop_face_check,
        ),
        JobType(
            "process-image",
            QUEUE_LIGHT,
            "process_image",
            _process_image_schema,
            suffix="img",
            column="processed_url",
            single_endpoint="process-image-queue",
            bulk_endpoint="bulk-process-image",
            title="Resize and convert",
        ),
    )
}

#: Endpoint name -> job type, for the API's routes.
SINGLE_ENDPOINTS = {jt.single_endpoint: jt for jt in JOB_TYPES.values()}
BULK_ENDPOINTS = {jt.bulk_endpoint: jt for jt in JOB_TYPES.values()}


def models_for(queues: tuple[str, ...]) -> frozenset[str]:
    """The models a worker on ``queues`` loads."""
    return frozenset().union(*(jt.models for jt in JOB_TYPES.values() if jt.queue in queues))


@dataclass(frozen=True)
class Payload:
    """What the API hands a worker for one job: built at enqueue, stored by rq, read by the task.

    Stored as the plain dict of ``asdict`` (rq keeps it in Redis with the job),
    so a payload outlives the code that wrote it: ``decode`` reads one that an
    older API wrote, and refuses one with fields it does not know.
    """

    vendor: str
    type: str
    record_id: str
    options: dict[str, Any]
    image_url: str | None = None
    #: True when the photo was uploaded: its bytes wait in Redis (``imgproc.queueing.uploads``).
    upload: bool = False
    #: Where to POST the job's end (its own, or its bulk request's).
    webhook_url: str | None = None

    @property
    def job_type(self) -> JobType:
        return JOB_TYPES[self.type]

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, job: Any) -> Payload | None:
        """The payload of a stored rq job; None for one that holds none (a webhook delivery, a damaged one).

        Every reader of a stored job goes through here, so that no stored value makes a read fail.
        """
        data = job.args[0] if job.args and isinstance(job.args[0], dict) else None
        if data is None:
            return None
        try:
            return cls.decode(data)
        except PermanentError:
            return None

    @classmethod
    def decode(cls, data: dict[str, Any]) -> Payload:
        """The payload of a stored dict; PermanentError ``internal`` when it is not one."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or data.get("type") not in JOB_TYPES:
            raise PermanentError(
                f"not a job payload this worker can read "
                f"(type {data.get('type')!r}, unknown fields {unknown})",
                code="internal",
            )
        try:
            return cls(**data)
        except TypeError as exc:  # a required field is missing
            raise PermanentError(f"not a job payload: {exc}", code="internal") from None
