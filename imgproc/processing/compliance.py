"""The compliance report of an ID photo (API.md ``compliance``): each check, its value, range and pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from imgproc.presets import Preset


@dataclass(frozen=True)
class Measured:
    """What the finished crop measures, in fractions of the output (heights) or degrees and counts."""

    faces: int
    roll: float
    head_height: float
    eye_line: float
    top_margin: float
    centre_offset: float
    background_std: float
    width: int
    height: int


def check(name: str, value, low=None, high=None, *, ndigits: int = 3, reason: str = "") -> dict[str, Any]:
    """One check: its value, the range it must lie in (either end may be open) and whether it does."""
    passed = (low is None or value >= low) and (high is None or value <= high)
    entry: dict[str, Any] = {"name": name, "value": round(float(value), ndigits) if ndigits else int(value)}
    if low is not None:
        entry["min"] = low
    if high is not None:
        entry["max"] = high
    entry["pass"] = bool(passed)
    if not passed and reason:
        entry["reason"] = reason
    return entry


def report(preset: Preset, m: Measured, file_bytes: int | None, crown_cut: bool = False) -> dict[str, Any]:
    """The checks of ``preset`` on the measured crop, and ``compliant`` when every one passes.

    ``crown_cut``: the hair runs into the photo's edge, so the crown (and the
    head height) may lie beyond what the photo shows; that fails on its own.
    """
    width, height = preset.pixels
    checks = [
        check(
            "faces",
            m.faces,
            None,
            1,
            ndigits=0,
            reason=f"{m.faces} faces in the photo; a standard allows one",
        ),
        check("roll_degrees", abs(m.roll), None, preset.roll_max, ndigits=1, reason="the head is tilted"),
        check("head_height_ratio", m.head_height, *preset.head, reason="chin to crown is out of range"),
        check("eye_line_from_bottom", m.eye_line, *preset.eye_line, reason="the eyes are too high or low"),
        check(
            "top_margin", m.top_margin, *preset.top_margin, reason="the gap above the hair is out of range"
        ),
        check(
            "head_centre_offset", m.centre_offset, None, preset.centre_max, reason="the head is off-centre"
        ),
        check(
            "background_uniformity",
            m.background_std,
            None,
            preset.background_std_max,
            ndigits=1,
            reason="the background next to the head is not plain",
        ),
        check("width_px", m.width, width, width, ndigits=0, reason=f"the standard is {width} px wide"),
        check("height_px", m.height, height, height, ndigits=0, reason=f"the standard is {height} px high"),
    ]
    if crown_cut:
        checks.append(
            check(
                "crown_in_photo",
                0,
                1,
                None,
                ndigits=0,
                reason="the hair reaches the photo's edge: the head may be taller than measured",
            )
        )
    if preset.file_kb and file_bytes is not None:
        low, high = preset.byte_range
        checks.append(
            {
                **check("file_kb", file_bytes / 1024, low / 1024, high / 1024, ndigits=1),
                "min": preset.file_kb[0],
                "max": preset.file_kb[1],
                "pass": bool(low <= file_bytes <= high),
            }
        )
    failed = [c for c in checks if not c["pass"]]
    return {
        "preset": preset.name,
        "compliant": not failed,
        "checks": checks,
        "failed": [c["name"] for c in failed],
    }


def background_std(rgb: np.ndarray, mask: np.ndarray, head_rows: int, band: int) -> float:
    """Standard deviation (0-255, mean over channels) of the background within ``band`` px of the head.

    The head is the foreground above row ``head_rows`` (the chin); the band
    around it, less the foreground itself, is what a reader of the photo sees
    next to the head.
    """
    fg = (mask >= 128).astype(np.uint8)
    head = fg.copy()
    head[max(0, head_rows) :] = 0
    if not head.any():
        return 0.0
    size = max(3, 2 * band + 1)
    near = cv2.dilate(head, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    ring = (near > 0) & (mask < 26)
    ring[max(0, head_rows) :] = False
    if ring.sum() < 16:
        return 0.0
    return float(rgb[ring].astype(np.float32).std(axis=0).mean())
