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
#: Widest (and tallest) shape an aspect may ask for, either way round: beyond it a face crop's frame
#: is mostly padding (``aspect "60:1"`` made a 115200x1920 crop of a 512x512 photo).
MAX_ASPECT = 10.0

Checker = Callable[[str, Any], Any]
#: Option name -> (checker, default); a default of None means "not set".
Schema = dict[str, tuple[Checker, Any]]


def _form(check: Checker, **form: Any) -> Checker:
    """``check`` carrying ``form``: what a form field for it takes (kind, bounds, choices), so that the
    page's fields are drawn from the checkers themselves (``imgproc.api.web.forms``) and cannot drift."""
    check.form = form  # type: ignore[attr-defined]
    return check


def form_of(check: Checker) -> dict[str, Any]:
    """The form of a checker made here: ``{"kind": ..., ...}``."""
    return dict(check.form)  # type: ignore[attr-defined]


_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_ASPECT = re.compile(r"^(\d{1,4}(?:\.\d{1,3})?):(\d{1,4}(?:\.\d{1,3})?)$")


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptions(name, "must be true or false")
    return value


_form(boolean, kind="bool")


def color(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _COLOR.match(value):
        raise InvalidOptions(name, "must be a colour like #rrggbb")
    return value.lower()


_form(color, kind="color")


def choice(*allowed: str) -> Checker:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise InvalidOptions(name, f"must be one of {', '.join(allowed)}")
        return value

    return _form(check, kind="choice", choices=list(allowed))


def whole(low: int, high: int) -> Checker:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidOptions(name, f"must be a whole number from {low} to {high}")
        return value

    return _form(check, kind="int", min=low, max=high)


def fraction(low: float, high: float) -> Checker:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InvalidOptions(name, f"must be a number from {low} to {high}")
        return float(value)

    return _form(check, kind="number", min=low, max=high)


def size(max_pixels: int) -> Checker:
    """``[width, height]`` of an output: each side at most ``MAX_SIDE``, both at most ``max_pixels``."""

    def check(name: str, value: Any) -> list[int]:
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in value)
        ):
            raise InvalidOptions(name, f"must be [width, height], whole numbers from 1 to {MAX_SIDE}")
        if value[0] * value[1] > max_pixels:
            raise InvalidOptions(
                name, f"{value[0]}x{value[1]} is {value[0] * value[1]} pixels, over the limit of {max_pixels}"
            )
        return [value[0], value[1]]

    return _form(check, kind="size", min=1, max=MAX_SIDE, max_pixels=max_pixels)


def aspect(name: str, value: Any) -> str:
    match = _ASPECT.match(value) if isinstance(value, str) else None
    if not match or float(match[1]) <= 0 or float(match[2]) <= 0:
        raise InvalidOptions(name, "must be a ratio like 3:4")
    within_aspect(name, aspect_ratio(value))
    return value


_form(aspect, kind="aspect", max_ratio=MAX_ASPECT)


def within_aspect(name: str, ratio: float) -> None:
    """Refuse a shape wider or taller than ``MAX_ASPECT`` to 1, naming the option that set it."""
    if not 1 / MAX_ASPECT <= ratio <= MAX_ASPECT:
        raise InvalidOptions(name, f"is wider or taller than {MAX_ASPECT:g}:1 (a ratio of {ratio:.4g})")


def aspect_ratio(value: str) -> float:
    """Width over height of a ``W:H`` string that ``aspect`` accepted.

    It lives beside its checker, so that the format checked and the format
    read can never drift apart; the face crop's geometry reads it from here.
    """
    w, h = value.split(":")
    return float(w) / float(h)


_LENGTH = re.compile(r"^(\d{1,5}(?:\.\d{1,3})?)(px|%)?$")
_PERCENT = re.compile(r"^(\d{1,3}(?:\.\d{1,3})?)%$")
#: Named positions of ``position``, as CSS's ``background-position`` reads them: (x, y) fractions of the
#: room left beside the subject.
POSITIONS = {"center": (0.5, 0.5), "top": (0.5, 0.0), "bottom": (0.5, 1.0)}


def margin(name: str, value: Any) -> str:
    """A margin as CSS writes one: one, two (vertical, horizontal) or four (top, right, bottom, left)
    lengths, each ``12px``, ``12`` (pixels) or ``5%`` (of the subject's matching side); stored as four."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = f"{value}px"
    parts = value.split() if isinstance(value, str) else []
    lengths = [_LENGTH.match(part) for part in parts]
    if len(parts) not in (1, 2, 4) or not all(lengths):
        raise InvalidOptions(name, 'must be one, two or four lengths like "12px" or "5%", as CSS margins')
    for part in lengths:
        number, unit = float(part[1]), part[2] or "px"
        if unit == "%" and number > 100 or unit == "px" and number > MAX_SIDE:
            raise InvalidOptions(name, f"{part[0]} is over {'100%' if unit == '%' else f'{MAX_SIDE}px'}")
    normal = [f"{float(m[1]):g}{m[2] or 'px'}" for m in lengths]
    if len(normal) == 1:
        normal *= 4
    elif len(normal) == 2:
        normal *= 2
    return " ".join(normal)


_form(margin, kind="text", pattern="margin")


def margin_values(value: str, width: float, height: float) -> tuple[float, float, float, float]:
    """Top, right, bottom, left in pixels of a ``margin`` around a subject of ``width`` x ``height``."""
    sides = []
    for i, part in enumerate(value.split()):
        match = _LENGTH.match(part)
        number = float(match[1])
        if match[2] == "%":
            number *= (height if i % 2 == 0 else width) / 100
        sides.append(number)
    return sides[0], sides[1], sides[2], sides[3]


def percent(low: float, high: float) -> Checker:
    """A share written ``"85%"`` (or as a fraction, 0.85), stored as the fraction."""

    def check(name: str, value: Any) -> float:
        match = _PERCENT.match(value) if isinstance(value, str) else None
        if match:
            number = float(match[1]) / 100
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            raise InvalidOptions(name, f'must be a percentage like "85%", from {low:.0%} to {high:.0%}')
        if not low <= number <= high:
            raise InvalidOptions(name, f"must be from {low:.0%} to {high:.0%}")
        return number

    return _form(check, kind="text", pattern="percent", min=low, max=high)


def position(name: str, value: Any) -> str:
    """``center``, ``top``, ``bottom`` or ``"X% Y%"`` (where the subject sits in the room left)."""
    if value in POSITIONS:
        return value
    parts = value.split() if isinstance(value, str) else []
    matches = [_PERCENT.match(part) for part in parts]
    if len(parts) != 2 or not all(matches) or any(float(m[1]) > 100 for m in matches):
        raise InvalidOptions(name, 'must be center, top, bottom or two percentages like "50% 100%"')
    return " ".join(f"{float(m[1]):g}%" for m in matches)


_form(position, kind="text", pattern="position")


def position_fractions(value: str) -> tuple[float, float]:
    """The (x, y) fractions of a ``position`` that the checker accepted."""
    if value in POSITIONS:
        return POSITIONS[value]
    x, y = (float(part[:-1]) / 100 for part in value.split())
    return x, y


def url(name: str, value: Any) -> str:
    """An absolute http(s) URL with a host; where it may lead is checked when it is fetched, as a photo's."""
    if not isinstance(value, str) or len(value) > 2048 or not re.match(r"^https?://[^/?#\s]+", value, re.I):
        raise InvalidOptions(name, "must be an http or https URL with a host, at most 2048 characters")
    return value


_form(url, kind="url")
