"""The compliance report of a marketplace main image (API.md "Marketplace presets"): each rule, checked.

Same shape as an ID photo's (``imgproc.processing.compliance``): ``checks``
with value, limits and pass, ``failed`` the names of those that did not pass,
``compliant`` when none failed; plus ``advice``, what the marketplace
recommends rather than requires, which never fails a report.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from imgproc.presets import ASPECT_TOLERANCE, MarketplacePreset

from .compliance import check
from .imaging import parse_color

#: Alpha above which a pixel is the subject's, for its box and for the frame's edge (API.md ``crop``).
SUBJECT_ALPHA = 32
#: Pixels next to the subject left out of the background check of a lossy file: JPEG and WebP ring
#: within their blocks, and with 4:2:0 chroma (Pillow's default at any quality) a block of colour is
#: 16x16 px; measured, a JPEG at quality 30-85 left off-white pixels up to 14 px from the subject.
LOSSY_BAND = 16
#: Formats whose pixels decode exactly as they were encoded: no band.
LOSSLESS = frozenset({"png"})


def report(
    preset: MarketplacePreset,
    rgb: np.ndarray,
    alpha: np.ndarray,
    fmt: str,
    srgb: bool,
    file_bytes: int | None = None,
) -> dict[str, Any]:
    """The checks of ``preset`` on an output, and ``compliant`` when every one passes.

    ``rgb``: the output as a viewer sees it (HxWx3, decoded from the file);
    ``alpha``: the placed subject's alpha on the same canvas, before any
    background; ``fmt``: the output's format (a zip is judged by its
    ``color.jpg``, and ``file_bytes`` should then be that file's size);
    ``srgb``: whether the file is sRGB.
    """
    if rgb.shape[:2] != alpha.shape[:2]:
        raise ValueError(f"rgb is {rgb.shape[1]}x{rgb.shape[0]}, alpha {alpha.shape[1]}x{alpha.shape[0]}")
    upload = "jpg" if fmt == "zip" else fmt
    advice: list[str] = []
    checks = _sizes(preset, *alpha.shape[1::-1], advice) + _subject(preset, alpha, advice)
    if preset.pure_background or preset.background_advice:
        band = 0 if upload in LOSSLESS else LOSSY_BAND
        share, off = _background(rgb, alpha, parse_color(preset.bgcolor), band)
        if preset.pure_background:
            why = f"{off} px outside the subject are not exactly {preset.bgcolor}"
            checks.append({**check("background_white", share, 1.0, ndigits=4, reason=why), "off_pixels": off})
        elif off:
            advice.append(f"{off} px outside the subject are not {preset.bgcolor}, the background asked for")
    why = f"the marketplace takes {', '.join(preset.formats)}"
    checks.append(_is("format", upload, upload in preset.formats, why, allowed=list(preset.formats)))
    if preset.srgb:
        checks.append(_is("srgb", srgb, srgb, "the file is not sRGB"))
    if preset.max_file_mb is not None and file_bytes is not None:
        mb = file_bytes / 1e6
        checks.append(
            check("file_mb", mb, None, preset.max_file_mb, ndigits=2, reason="the file is too large")
        )
    failed = [c["name"] for c in checks if not c["pass"]]
    return {
        "preset": preset.name,
        "compliant": not failed,
        "checks": checks,
        "failed": failed,
        "advice": advice,
    }


def _sizes(preset: MarketplacePreset, width: int, height: int, advice: list[str]) -> list[dict[str, Any]]:
    """The checks of the image's size, shape and pixel count; its recommended size as advice."""
    longest, shortest = max(width, height), min(width, height)
    which, measured = ("shortest", shortest) if preset.side == "shortest" else ("longest", longest)
    high = preset.max_side if which == "longest" else None
    found = []
    if preset.min_side is not None or high is not None:
        why = f"the {which} side is out of range"
        found.append(check(f"{which}_side_px", measured, preset.min_side, high, ndigits=0, reason=why))
    if which == "shortest" and preset.max_side is not None:
        why = "the longest side is too long"
        found.append(check("longest_side_px", longest, None, preset.max_side, ndigits=0, reason=why))
    if preset.recommended_side and measured < preset.recommended_side:
        advice.append(f"{which} side {measured} px, under the {preset.recommended_side} px recommended")
    if preset.aspect:
        target, (w, h) = preset.aspect[0] / preset.aspect[1], preset.aspect
        low, top = round(target * (1 - ASPECT_TOLERANCE), 4), round(target * (1 + ASPECT_TOLERANCE), 4)
        found.append(
            check("aspect_ratio", width / height, low, top, ndigits=4, reason=f"the shape is not {w}:{h}")
        )
    if preset.max_megapixels is not None:
        mp = width * height / 1e6
        found.append(
            check("megapixels", mp, None, preset.max_megapixels, ndigits=2, reason="too many pixels")
        )
    return found


def _subject(preset: MarketplacePreset, alpha: np.ndarray, advice: list[str]) -> list[dict[str, Any]]:
    """How much of the frame the subject fills, and whether the frame's edge cuts it."""
    subject = cv2.threshold(alpha, SUBJECT_ALPHA, 1, cv2.THRESH_BINARY)[1]
    found = []
    if preset.min_fill is not None:
        why = "the subject is too small in the frame"
        found.append(check("subject_fill", _fill(subject), preset.min_fill, reason=why))
    on_edge = _on_edge(subject)
    if preset.whole_subject:
        why = f"{on_edge} px of the subject on the frame's edge"
        found.append(check("subject_not_cut", on_edge, None, 0, ndigits=0, reason=why))
    elif on_edge:
        advice.append(f"the subject touches the frame's edge ({on_edge} px): it may be cut")
    return found


def _is(name: str, value: Any, passed: bool, reason: str, **extra: Any) -> dict[str, Any]:
    """A check of a value that is right or not (a format, a colour space) rather than in a range."""
    entry = {"name": name, "value": value, **extra, "pass": bool(passed)}
    if not passed:
        entry["reason"] = reason
    return entry


def _fill(subject: np.ndarray) -> float:
    """The subject box's longest side over the canvas' side in the same direction (0 without a subject)."""
    _, _, w, h = cv2.boundingRect(subject)
    height, width = subject.shape
    return w / width if w >= h else h / height


def _on_edge(subject: np.ndarray) -> int:
    """Subject pixels on the outermost rows and columns: where the frame cuts it."""
    total = int(subject[0].sum()) + int(subject[-1].sum())
    if subject.shape[0] > 2:
        total += int(subject[1:-1, 0].sum()) + int(subject[1:-1, -1].sum())
    return total


def _background(
    rgb: np.ndarray, alpha: np.ndarray, color: tuple[int, int, int], band: int
) -> tuple[float, int]:
    """The share of pixels outside the subject that are exactly ``color``, and how many are not.

    Outside: alpha 0 and more than ``band`` px (in rows or columns) from any
    pixel with alpha above 0, where a lossy file's ringing may reach.
    """
    near = cv2.threshold(alpha, 0, 1, cv2.THRESH_BINARY)[1]
    if band:
        near = cv2.dilate(near, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * band + 1, 2 * band + 1)))
    total = near.size - cv2.countNonZero(near)
    if not total:
        return 1.0, 0
    exact = cv2.inRange(rgb, np.array(color, np.uint8), np.array(color, np.uint8))
    # Off colour outside = off colour anywhere - off colour near the subject (counts: no more passes).
    near_exact = cv2.countNonZero(cv2.bitwise_and(near, exact))
    off = (near.size - cv2.countNonZero(exact)) - (near.size - total - near_exact)
    # Rounded down: 0.99996 shown as 1.0 would hide a failure.
    return int((total - off) / total * 1e4) / 1e4, off
