"""How close a mask is to a reference mask: IoU, and DAVIS' boundary F-measure.

iou(mask, ref)                  intersection over union of the masks cut at 128 (1.0 when both are empty)
boundary_f(mask, ref, bound)    F-measure of the two masks' boundary pixels, a pixel matched when the
                                other boundary passes within ``bound`` x the image diagonal (DAVIS' F,
                                Perazzi et al. 2016, its default bound 0.008)
"""

from __future__ import annotations

import math

import numpy as np

#: DAVIS' default tolerance: 0.8% of the image diagonal.
BOUND = 0.008


def binary(mask: np.ndarray) -> np.ndarray:
    """The foreground of a uint8 mask (at least half opaque)."""
    return np.asarray(mask) >= 128


def iou(mask: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union of two masks of the same size."""
    a, b = binary(mask), binary(ref)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def boundary(fg: np.ndarray) -> np.ndarray:
    """The pixels of a binary mask whose right, lower or lower-right neighbour differs (DAVIS' seg2bmap)."""
    b = np.zeros_like(fg)
    b[:, :-1] |= fg[:, :-1] != fg[:, 1:]
    b[:-1, :] |= fg[:-1, :] != fg[1:, :]
    b[:-1, :-1] |= fg[:-1, :-1] != fg[1:, 1:]
    return b


def boundary_f(mask: np.ndarray, ref: np.ndarray, bound: float = BOUND) -> float:
    """DAVIS' boundary F-measure of ``mask`` against ``ref`` (1.0 when neither has a boundary)."""
    import cv2

    got, want = boundary(binary(mask)), boundary(binary(ref))
    n_got, n_want = np.count_nonzero(got), np.count_nonzero(want)
    if n_got == 0 and n_want == 0:
        return 1.0
    if n_got == 0 or n_want == 0:
        return 0.0
    radius = max(1, math.ceil(bound * math.hypot(*mask.shape[:2])))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near_want = cv2.dilate(want.astype(np.uint8), disk) > 0
    near_got = cv2.dilate(got.astype(np.uint8), disk) > 0
    precision = np.count_nonzero(got & near_want) / n_got
    recall = np.count_nonzero(want & near_got) / n_want
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
