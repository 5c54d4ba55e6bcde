"""Seconds per ID photo against a plain face crop and a plain background removal, and the matting order.

``python -m bench.idphoto [--repeat 3]``: the operations called in this process
(no queue, no storage), on astronaut() at 512x512 and on a 12-megapixel
portrait (astronaut() enlarged to 3000x3000 on a 4000x3000 canvas of her
backdrop's colour). Each figure is the median of ``--repeat`` runs, the
kinds interleaved so that a busy machine slows all of them alike. The
matting order is compared on the same crop: region first (production) and
whole photo first (``Tools.mask_first``), with the largest difference
between their outputs and between their crowns.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image


def _photos() -> dict[str, bytes]:
    from skimage import data

    small = Image.fromarray(data.astronaut())
    canvas = Image.new("RGB", (4000, 3000), (200, 191, 189))
    canvas.paste(small.resize((3000, 3000), Image.Resampling.LANCZOS), (700, 0))
    out = {}
    for name, img in (("512x512", small), ("4000x3000", canvas)):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out[name] = buf.getvalue()
    return out


class TimedMatting:
    """The real model, counting the seconds spent in it."""

    def __init__(self, real):
        self.real, self.seconds = real, 0.0

    def mask(self, rgb: np.ndarray, model: str) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.real.mask(rgb, model)
        finally:
            self.seconds += time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idphoto", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from imgproc.api.options import validate
    from imgproc.config import Settings
    from imgproc.processing.models import BackgroundRemover, FaceDetector
    from imgproc.processing.operations import Tools, crop_face, remove_background

    settings = Settings()
    remover, detector = TimedMatting(BackgroundRemover(settings)), FaceDetector(settings)
    region = Tools(max_pixels=settings.max_image_pixels, remover=remover, detector=detector)
    whole = Tools(max_pixels=settings.max_image_pixels, remover=remover, detector=detector, mask_first=True)

    def crop(**given):
        return crop_face, validate("crop-face", given, settings)

    kinds = {
        "face crop (default)": (*crop(), region),
        "background removal (png)": (remove_background, validate("remove-bg", {}, settings), region),
        "ID photo us-passport, region first": (*crop(preset="us-passport"), region),
        "ID photo us-passport, photo first": (*crop(preset="us-passport"), whole),
        "ID photo china-id (size search), region first": (*crop(preset="china-id"), region),
    }
    for size, photo in _photos().items():
        runs: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in kinds}
        outputs: dict[str, object] = {}
        for _ in range(args.repeat):
            for kind, (operation, opts, tools) in kinds.items():
                remover.seconds = 0.0
                wall, cpu = time.perf_counter(), time.process_time()
                outputs[kind] = operation(photo, opts, tools)
                runs[kind].append((time.perf_counter() - wall, time.process_time() - cpu, remover.seconds))
        print(f"{size}: median wall s, CPU s (all threads), of which in the matting model (wall s)")
        for kind, got in runs.items():
            wall, cpu, model = (statistics.median(v) for v in zip(*got, strict=True))
            print(f"  {kind:48s} {wall:6.2f} {cpu:6.2f} {model:6.2f}   rest {wall - model:5.2f}")
        a = outputs["ID photo us-passport, region first"]
        b = outputs["ID photo us-passport, photo first"]
        pa = np.asarray(Image.open(io.BytesIO(a.data)), np.int16)
        pb = np.asarray(Image.open(io.BytesIO(b.data)), np.int16)
        crown_a, crown_b = a.extra["compliance"]["crown"], b.extra["compliance"]["crown"]
        print(
            f"  region vs photo first: crop_box {a.extra['crop_box']} vs {b.extra['crop_box']}, "
            f"crown {crown_a} vs {crown_b}, mean |diff| {np.abs(pa - pb).mean():.2f} of 255"
        )
    detector.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
