"""Edge refinement of a background-removal mask: ``post_process_mask`` and ``alpha_matting``.

``post_process`` is rembg's mask clean-up (a 3x3 opening, a Gaussian of sigma 2,
a threshold at 127) in OpenCV: rembg's own import pulls in pymatting, whose
numba kernels compile at import (61 s on this 2-core machine) or fail outright
when no cache folder is writable, as in the Docker images (``internal``:
"cannot cache function '_make_tree': no locator available").

``alpha_matte`` is rembg's ``alpha_matting_cutout`` (the same trimap, then
pymatting's closed-form alpha and multilevel foreground). pymatting compiles its
kernels into ``cache_dir`` once: ``imgproc models fetch`` (``make models``, the
images' build) does it, so a worker's first matting job only loads them (1 s).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

# rembg's thresholds: above 240 is foreground, below 10 background, both eroded by a 10x10 square.
FOREGROUND, BACKGROUND, ERODE = 240, 10, 10

_OPEN_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_lock = threading.Lock()
_pymatting: ModuleType | None = None


def post_process(mask: np.ndarray) -> np.ndarray:
    """Remove specks and small holes from a uint8 mask and smooth its boundary to a clean 0/255 edge."""
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN_KERNEL, borderType=cv2.BORDER_REFLECT)
    # scipy's gaussian_filter(sigma=2) reaches 4 sigma: a 17-pixel kernel, mirrored at the edges.
    blurred = cv2.GaussianBlur(opened.astype(np.float32), (17, 17), 2, borderType=cv2.BORDER_REFLECT)
    return np.where(blurred < 127, 0, 255).astype(np.uint8)


def trimap(mask: np.ndarray) -> np.ndarray:
    """Sure foreground 255, sure background 0, the band between 128: rembg's trimap for matting."""
    square = np.ones((ERODE, ERODE), np.uint8)
    # Erosion of the background treats outside the photo as background (scipy's border_value=1).
    sure_fg = cv2.erode(
        (mask > FOREGROUND).astype(np.uint8), square, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    sure_bg = cv2.erode(
        (mask < BACKGROUND).astype(np.uint8), square, borderType=cv2.BORDER_CONSTANT, borderValue=1
    )
    out = np.full(mask.shape, 128, np.uint8)
    out[sure_fg.astype(bool)] = 255
    out[sure_bg.astype(bool)] = 0
    return out


def load_pymatting(cache_dir: str | Path) -> ModuleType:
    """Import pymatting with its numba kernels cached in ``cache_dir`` (compiled there the first time)."""
    global _pymatting
    with _lock:
        if _pymatting is None:
            import numba

            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            # Read by numba when each cached kernel is declared, that is while pymatting imports.
            numba.config.CACHE_DIR = str(cache_dir)
            import pymatting

            _pymatting = pymatting
        return _pymatting


def alpha_matte(rgb: np.ndarray, mask: np.ndarray, cache_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Refined (foreground RGB, alpha) from a photo and its mask, both uint8."""
    pm = load_pymatting(cache_dir)
    image = rgb.astype(np.float64) / 255.0
    alpha = pm.estimate_alpha_cf(image, trimap(mask).astype(np.float64) / 255.0)
    foreground = pm.estimate_foreground_ml(image, alpha)
    to_uint8 = lambda a: np.clip(a * 255, 0, 255).astype(np.uint8)  # noqa: E731
    return to_uint8(foreground), to_uint8(alpha)


def warm(cache_dir: str | Path) -> float:
    """Compile pymatting's kernels into ``cache_dir`` and run one small matte; the seconds it took."""
    import time

    started = time.perf_counter()
    rgb = np.zeros((32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    alpha_matte(rgb, mask, cache_dir)
    return time.perf_counter() - started
