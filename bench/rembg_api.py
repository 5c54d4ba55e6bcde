"""imgproc's background removal against ``rembg.remove`` (rembg's own Python API), in one process.

``python -m bench.rembg_api`` (and ``make bench``, through bench/run.py). Both
take the same JPEG bytes and give PNG bytes (decode, ISNet, cut-out, encode),
with the same intra-op threads, on the variants' gate photos scaled to
512x512, alternated photo by photo so a slow minute of this shared machine
slows both alike. rembg runs fp32 ISNet, as it ships it (the derived
``isnet-general-use.fp32.onnx`` under rembg's file name in a scratch folder);
imgproc runs its worker's path (``operations.remove_background`` with a
``BackgroundRemover``) on the default model.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.variants import GATE_PHOTOS, cpu_flags, gate_photo
from imgproc.config import ROOT, Settings

SIDE = 512
#: Least rembg.remove seconds ÷ imgproc seconds per photo (issue 14, part 1).
TARGET = 1.5


def jpeg_512(name: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(gate_photo(name)).resize((SIDE, SIDE), Image.Resampling.LANCZOS).save(
        buf, "JPEG", quality=90
    )
    return buf.getvalue()


def _rembg_session(models_dir: Path, scratch: Path, threads: int):
    import onnxruntime as ort
    from rembg import new_session

    (scratch / "isnet-general-use.onnx").symlink_to(models_dir / "isnet-general-use.fp32.onnx")
    os.environ["U2NET_HOME"] = str(scratch)
    os.environ["MODEL_CHECKSUM_DISABLED"] = "1"  # the file is ours: rembg would fetch its own otherwise
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return new_session("isnet-general-use", sess_opts=opts)


def measure(settings: Settings, photos: list[str], rounds: int, log=print) -> dict:
    """Median seconds per photo of each, pooled over ``rounds``, and rembg's ÷ imgproc's."""
    from rembg import remove

    from imgproc.api.options import validate
    from imgproc.processing.models import BackgroundRemover
    from imgproc.processing.operations import Tools, remove_background

    data = {name: jpeg_512(name) for name in photos}
    threads = settings.intra_op_threads
    remover = BackgroundRemover(settings)
    tools = Tools(
        max_pixels=settings.max_image_pixels, png_level=settings.png_compress_level, remover=remover
    )
    opts = validate("remove-bg", {}, settings)
    times: dict[str, list[float]] = {"imgproc": [], "rembg": []}
    with tempfile.TemporaryDirectory() as scratch:
        session = _rembg_session(Path(settings.models_dir), Path(scratch), threads)
        runs = {
            "imgproc": lambda jpeg: remove_background(jpeg, opts, tools).data,
            "rembg": lambda jpeg: remove(jpeg, session=session),
        }
        for name in runs:  # one warm-up each: ONNX Runtime sizes its arena on the first run
            runs[name](data[photos[0]])
        for r in range(rounds):
            for photo in photos:
                for name in ("imgproc", "rembg") if r % 2 == 0 else ("rembg", "imgproc"):
                    started = time.perf_counter()
                    out = runs[name](data[photo])
                    times[name].append(time.perf_counter() - started)
                    assert out[:8] == b"\x89PNG\r\n\x1a\n", f"{name} gave no PNG for {photo}"
    imgproc_s, rembg_s = statistics.median(times["imgproc"]), statistics.median(times["rembg"])
    result = {
        "size": f"{SIDE}x{SIDE}",
        "photos": photos,
        "rounds": rounds,
        "threads": threads,
        "cpu_flags": cpu_flags(),
        "imgproc_model": f"{settings.bg_model} ({settings.precision} file)",
        "rembg_model": "isnet-general-use, fp32 file",
        "imgproc_s": round(imgproc_s, 4),
        "rembg_s": round(rembg_s, 4),
        "ratio": round(rembg_s / imgproc_s, 3),
        "runs_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }
    log(
        f"in one process, {len(photos)} photos of {SIDE}x{SIDE} x {rounds} rounds, {threads} threads: "
        f"imgproc {imgproc_s:.3f} s, rembg.remove {rembg_s:.3f} s per photo: {result['ratio']:.2f}x"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rembg_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=",".join(GATE_PHOTOS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-rembg-api.json")
    args = parser.parse_args(argv)
    result = measure(Settings.from_env(), args.photos.split(","), args.rounds)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
