"""The kinds of value a job option can take, each a checker that names the option it refuses.

A checker takes the option's name and the value a vendor sent, and returns
the value to store (normalised) or raises ``InvalidOptions``. The job types'
schemas (``imgproc.jobtypes``) are built from these.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import InvalidOptions

#: Longest side of any size an option may ask for.
MAX_SIDE = 10_000

Checker = Callable[[str, Any], Any]
#: Option name -> (checker, default); a default of None means "not set".
Schema = dict[str, tuple[Checker, Any]]

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_ASPECT = re.compile(r"^(\d{1,4}(?:\.\d{1,3})?):(\d{1,4}(?:\.\d{1,3})?)$")


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptions(name, "must be true or false")
    return value


def color(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _COLOR.match(value):
        raise InvalidOptions(name, "must be a colour like #rrggbb")
    return value.lower()


def choice(*allowed: str) -> Checker:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise InvalidOptions(name, f"must be one of {', '.join(allowed)}")
        return value

    return check


def whole(low: int, high: int) -> Checker:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidOptions(name, f"must be a whole number from {low} to {high}")
        return value

    return check


def fraction(low: float, high: float) -> Checker:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InvalidOptions(name, f"must be a number from {low} to {high}")
        return float(value)

    return check


def size(name: str, value: Any) -> list[int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in value)
    ):
        raise InvalidOptions(name, f"must be [width, height], whole numbers from 1 to {MAX_SIDE}")
    return [value[0], value[1]]


def aspect(name: str, value: Any) -> str:
    match = _ASPECT.match(value) if isinstance(value, str) else None
    if not match or float(match[1]) <= 0 or float(match[2]) <= 0:
        raise InvalidOptions(name, "must be a ratio like 3:4")
    return value


def aspect_ratio(value: str) -> float:
    """Width over height of a ``W:H`` string that ``aspect`` accepted.

    It lives beside its checker, so that the format checked and the format
    read can never drift apart; the face crop's geometry reads it from here.
    """
    w, h = value.split(":")
    return float(w) / float(h)
