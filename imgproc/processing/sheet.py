"""A print sheet: copies of an ID photo at their real size on 4x6 in paper, 300 dpi (``sheet``). Pure."""

from __future__ import annotations

import cv2
import numpy as np

from imgproc.presets import SHEET_DPI, SHEET_INCHES

#: Colour of the one-pixel cutting guides between copies.
GUIDE = (200, 200, 200)


def layout(photo_px: tuple[int, int], sheet_px: tuple[int, int]) -> tuple[int, int]:
    """Columns and rows of ``photo_px`` copies that fit edge to edge on ``sheet_px``."""
    return sheet_px[0] // photo_px[0], sheet_px[1] // photo_px[1]


def tile(photo: np.ndarray, mm: tuple[float, float], paper=(255, 255, 255)) -> tuple[np.ndarray, int]:
    """The sheet (RGB, landscape or portrait, whichever holds more copies) and how many copies it holds.

    Each copy is ``mm`` on paper: the photo is resampled to 300 dpi, the grid
    centred, and a light guide drawn along every cut.
    """
    width = max(1, round(mm[0] / 25.4 * SHEET_DPI))
    height = max(1, round(mm[1] / 25.4 * SHEET_DPI))
    landscape = (round(SHEET_INCHES[0] * SHEET_DPI), round(SHEET_INCHES[1] * SHEET_DPI))
    portrait = landscape[::-1]
    size = max((landscape, portrait), key=lambda s: (np.prod(layout((width, height), s)), s == landscape))
    cols, rows = layout((width, height), size)
    sheet = np.empty((size[1], size[0], 3), np.uint8)
    sheet[:] = paper
    if not cols or not rows:
        return sheet, 0
    shrink = width < photo.shape[1]
    copy = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    left = (size[0] - cols * width) // 2
    top = (size[1] - rows * height) // 2
    for row in range(rows):
        for col in range(cols):
            x, y = left + col * width, top + row * height
            sheet[y : y + height, x : x + width] = copy
    for col in range(cols + 1):
        x = min(size[0] - 1, left + col * width)
        sheet[top : top + rows * height, x] = GUIDE
    for row in range(rows + 1):
        y = min(size[1] - 1, top + row * height)
        sheet[y, left : left + cols * width] = GUIDE
    return sheet, cols * rows
