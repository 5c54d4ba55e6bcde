"""What ``IMGPROC_MAX_MATTING_PIXELS`` keeps of the edge: bounded ``alpha_matting`` against full-resolution.

``python -m bench.mattingbound`` takes scikit-image's real photos, ISNet's
mask of each, and mattes them at full resolution and shrunk to a share of
their pixels (``matting.alpha_matte`` with and without ``max_pixels``), then
prints the IoU of the two alphas (at 128), their mean absolute difference
(0-255) over the photo and in the edge band (the trimap's unknown pixels, or
a partial alpha), and the same for ISNet's mask alone, the result without
matting. ``--enlarge`` also runs astronaut() enlarged to 2048x2048, where a
full matte costs ~2.2 GiB and ~30 s. Not part of ``make bench``: the figures
are the README's (Limits).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from imgproc.config import Settings
from imgproc.processing import matting
from imgproc.processing.models import BackgroundRemover

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def compare(alpha: np.ndarray, full: np.ndarray, band: np.ndarray) -> str:
    iou = ((alpha >= 128) & (full >= 128)).sum() / max(1, ((alpha >= 128) | (full >= 128)).sum())
    diff = np.abs(alpha.astype(int) - full)
    return (
        f"IoU {iou:.4f}, mean |alpha diff| {diff.mean():.2f} over the photo, "
        f"{diff[band].mean():.1f} in the band"
    )


def run(name: str, rgb: np.ndarray, mask: np.ndarray, shares: list[float], cache) -> None:
    started = time.perf_counter()
    _, full = matting.alpha_matte(rgb, mask, cache)
    seconds = time.perf_counter() - started
    band = (matting.trimap(mask) == 128) | ((full > 0) & (full < 255))
    height, width = mask.shape
    print(f"{name} {width}x{height} ({mask.size / 1e6:.2f} MP): full matte {seconds:.1f} s")
    for share in shares:
        started = time.perf_counter()
        _, alpha = matting.alpha_matte(rgb, mask, cache, round(mask.size * share))
        print(
            f"  on {share:.0%} of the pixels ({mask.size * share / 1e6:.2f} MP, {share**-0.5:.1f}x smaller a "
            f"side): {time.perf_counter() - started:.1f} s; {compare(alpha, full, band)}"
        )
    print(f"  ISNet's mask alone: {compare(mask, full, band)}")


def main(argv: list[str] | None = None) -> int:
    description = __doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.mattingbound", description=description)
    parser.add_argument("--enlarge", action="store_true", help="also astronaut() at 2048x2048 (4.2 MP)")
    args = parser.parse_args(argv)
    from skimage import data

    settings = Settings()
    remover = BackgroundRemover(settings, 1)
    cache = settings.matting_cache_dir
    matting.load_pymatting(cache)
    for name in PHOTOS:
        rgb = getattr(data, name)()
        run(name, rgb, remover.mask(rgb, settings.bg_model), [0.25], cache)
    if args.enlarge:
        rgb = cv2.resize(data.astronaut(), (2048, 2048), interpolation=cv2.INTER_CUBIC)
        run("astronaut enlarged", rgb, remover.mask(rgb, settings.bg_model), [0.5, 0.25], cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
