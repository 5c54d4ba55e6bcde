"""Job options of API.md: validated and filled with defaults before anything is enqueued."""

from __future__ import annotations

import re
from typing import Any, Callable

from .config import QUEUE_BG, QUEUE_FACE, QUEUE_LIGHT, Settings
from .errors import InvalidOptions

#: Job types of the API and the queue each one runs on.
JOB_QUEUES = {"remove-bg": QUEUE_BG, "crop-face": QUEUE_FACE, "process-image": QUEUE_LIGHT}

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_ASPECT = re.compile(r"^(\d{1,4}(?:\.\d{1,3})?):(\d{1,4}(?:\.\d{1,3})?)$")
MAX_SIDE = 10_000

Checker = Callable[[str, Any], Any]


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptions(name, "must be true or false")
    return value


def _color(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _COLOR.match(value):
        raise InvalidOptions(name, "must be a colour like #rrggbb")
    return value.lower()


def _choice(*allowed: str) -> Checker:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise InvalidOptions(name, f"must be one of {', '.join(allowed)}")
        return value

    return check


def _int(low: int, high: int) -> Checker:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidOptions(name, f"must be a whole number from {low} to {high}")
        return value

    return check


def _fraction(low: float, high: float) -> Checker:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InvalidOptions(name, f"must be a number from {low} to {high}")
        return float(value)

    return check


def _size(name: str, value: Any) -> list[int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in value)
    ):
        raise InvalidOptions(name, f"must be [width, height], whole numbers from 1 to {MAX_SIDE}")
    return [value[0], value[1]]


def _aspect(name: str, value: Any) -> str:
    match = _ASPECT.match(value) if isinstance(value, str) else None
    if not match or float(match[1]) <= 0 or float(match[2]) <= 0:
        raise InvalidOptions(name, "must be a ratio like 3:4")
    return value


def aspect_ratio(value: str) -> float:
    """Width over height of a validated ``W:H`` string."""
    w, h = value.split(":")
    return float(w) / float(h)


def _schemas(settings: Settings) -> dict[str, dict[str, tuple[Checker, Any]]]:
    return {
        "remove-bg": {
            "model": (_choice(*settings.bg_models), settings.bg_model),
            "format": (_choice("png", "webp", "jpg"), "png"),
            "bgcolor": (_color, None),
            "alpha_matting": (_bool, False),
            "post_process_mask": (_bool, False),
            "max_size": (_int(16, MAX_SIDE), None),
        },
        "crop-face": {
            "aspect": (_aspect, "3:4"),
            "size": (_size, None),
            "face_height": (_fraction(0.05, 1.0), 0.5),
            "face_center_y": (_fraction(0.0, 1.0), 0.42),
            "remove_background": (_bool, False),
            "bgcolor": (_color, "#ffffff"),
            "format": (_choice("jpg", "png", "webp"), "jpg"),
            "select": (_choice("largest", "most_confident"), "largest"),
        },
        "process-image": {
            "resize": (_size, None),
            "fit": (_choice("contain", "cover"), "contain"),
            "format": (_choice("jpg", "png", "webp"), "jpg"),
            "quality": (_int(1, 100), 85),
            "strip_metadata": (_bool, True),
        },
    }


def validate(job_type: str, options: Any, settings: Settings) -> dict[str, Any]:
    """Check every option of a job and return them all, defaults filled in."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidOptions("options", "must be a JSON object")
    schema = _schemas(settings)[job_type]
    unknown = sorted(set(options) - set(schema))
    if unknown:
        raise InvalidOptions(unknown[0], f"is not an option of {job_type} (known: {', '.join(schema)})")
    result = {}
    for name, (check, default) in schema.items():
        value = options.get(name)
        result[name] = default if value is None else check(name, value)
    _cross_check(job_type, options, result)
    return result


def _cross_check(job_type: str, given: dict, result: dict) -> None:
    if job_type == "remove-bg" and result["format"] == "jpg" and not result["bgcolor"]:
        raise InvalidOptions("bgcolor", "is needed with format jpg, which has no transparency")
    if job_type == "crop-face" and result["size"]:
        w, h = result["size"]
        if "aspect" in given and abs(aspect_ratio(result["aspect"]) - w / h) > 0.01:
            raise InvalidOptions("size", f"{w}x{h} does not have the aspect {result['aspect']}")
        result["aspect"] = f"{w}:{h}"  # size alone decides the shape
