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

import math
import shutil
import tempfile
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


def trimap(mask: np.ndarray, erode: int = ERODE) -> np.ndarray:
    """Sure foreground 255, sure background 0, the band between 128: rembg's trimap for matting."""
    square = np.ones((erode, erode), np.uint8)
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

            # Read by numba when each cached kernel is declared, that is while pymatting imports.
            numba.config.CACHE_DIR = str(_writable_copy(Path(cache_dir)))
            import pymatting

            _pymatting = pymatting
        return _pymatting


def _writable_copy(cache_dir: Path) -> Path:
    """``cache_dir``, or a copy in the temp folder where it cannot be written.

    numba uses a cache folder only if it can write there (it probes with a temporary file), even
    to load kernels compiled earlier: on the images' read-only root (`read_only: true`) the kernels
    that `imgproc models fetch` compiled at build time (a few MB) are copied to /tmp, a tmpfs.
    """
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache_dir):
            return cache_dir
    except OSError:
        copy = Path(tempfile.gettempdir()) / "imgproc-numba-cache"
        if cache_dir.is_dir():
            shutil.copytree(cache_dir, copy, dirs_exist_ok=True)
        return copy


def alpha_matte(
    rgb: np.ndarray, mask: np.ndarray, cache_dir: str | Path, max_pixels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Refined (foreground RGB, alpha) of a photo and its mask, both uint8, matted on at most ``max_pixels``.

    The closed-form alpha costs about 0.55 GiB and 3-6 s a megapixel (a 50 MP
    photo would ask 27 GiB), so a larger photo is matted shrunk to ``max_pixels``
    and its alpha brought back up; the photo keeps its own pixels except in the
    edge band (alpha strictly between 0 and 255), which takes the estimated
    foreground's colour. ISNet's mask has at most 1024x1024 pixels of its own.
    """
    pm = load_pymatting(cache_dir)
    height, width = mask.shape
    scale = min(1.0, math.sqrt(max_pixels / (height * width))) if max_pixels else 1.0
    if scale == 1.0:
        return _matte(pm, rgb, mask, ERODE)
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    foreground, alpha = _matte(
        pm,
        cv2.resize(rgb, small, interpolation=cv2.INTER_AREA),
        cv2.resize(mask, small, interpolation=cv2.INTER_AREA),
        max(3, round(ERODE * scale)),  # the band as wide in the photo's pixels as unshrunk
    )
    alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    up = cv2.resize(foreground, (width, height), interpolation=cv2.INTER_LINEAR)
    solid = cv2.bitwise_not(cv2.inRange(alpha, 1, 254))  # alpha 0 or 255: the photo's own pixels
    return cv2.copyTo(rgb, solid, up), alpha


def _matte(pm: ModuleType, rgb: np.ndarray, mask: np.ndarray, erode: int) -> tuple[np.ndarray, np.ndarray]:
    known = trimap(mask, erode)
    if not (known == 255).any() or not (known == 0).any():
        # Nothing left sure on one side once eroded (a thin or tiny subject): pymatting raises
        # ValueError, which failed the job as internal; the mask is all that can be said.
        return rgb, mask
    image = rgb.astype(np.float64) / 255.0
    alpha = pm.estimate_alpha_cf(image, known.astype(np.float64) / 255.0)
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
