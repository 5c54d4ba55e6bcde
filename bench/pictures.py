"""``python -m bench.pictures``: the README's before/after pictures of cut-outs, made by the real service.

A local stack as a user runs it (gunicorn API, one ``python worker.py``, the
Python client over HTTP), scikit-image's photos served over HTTP; each shot
is one remove-bg job whose result is downloaded as any client would, then
shrunk into ``docs/cutouts/`` (transparency over a chequerboard, a zip put
back together, the mask as it is). It prints each job's confidence, review
and compliance, the figures docs/cutouts.md quotes.
"""

from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgproc.config import ROOT
from imgproc.testing import LocalStack, PhotoServer, local_env

OUT = ROOT / "docs" / "cutouts"
#: Longest side of a picture in the docs.
SIDE = 240
#: name -> (photo, options): each a remove-bg job.
SHOTS = {
    "plain": ("coffee", {}),
    "crop-margin": ("coffee", {"crop": True, "crop_margin": "5%"}),
    "canvas-scale-position": ("coffee", {"canvas": [800, 600], "scale": "60%", "position": "0% 100%"}),
    "bgcolor": ("coffee", {"crop": True, "crop_margin": "24px", "bgcolor": "#f2c14e", "format": "jpg"}),
    "bg-image": ("astronaut", {"bg_image_url": "/brick.jpg", "format": "jpg"}),
    "bg-blur": ("astronaut", {"bg_blur": 12, "format": "jpg"}),
    "shadow": ("coffee", {"crop": True, "crop_margin": "4% 8% 12% 8%", "shadow": True, "bgcolor": "#ffffff"}),
    "mask": ("chelsea", {"channels": "alpha"}),
    "zip": ("chelsea", {"format": "zip"}),
    "amazon-main": ("coffee", {"preset": "amazon-main"}),
}


def photos() -> dict[str, bytes]:
    from skimage import data

    found = {}
    for name in ("coffee", "astronaut", "chelsea", "brick"):
        pixels = getattr(data, name)()
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=2)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=92)
        found[name] = out.getvalue()
    return found


def chequered(rgba: Image.Image) -> Image.Image:
    """An RGBA image over a grey chequerboard, the way editors show transparency."""
    tile = 12
    w, h = rgba.size
    yy, xx = np.mgrid[:h, :w]
    board = np.where(((yy // tile + xx // tile) % 2)[..., None] == 0, 235, 200).astype(np.uint8)
    back = Image.fromarray(np.repeat(board, 3, axis=2))
    back.paste(rgba, mask=rgba.getchannel("A"))
    return back


def picture(data: bytes, fmt: str) -> Image.Image:
    """What a result looks like, as an RGB picture."""
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            color = Image.open(io.BytesIO(archive.read("color.jpg"))).convert("RGB")
            alpha = Image.open(io.BytesIO(archive.read("alpha.png"))).convert("L")
        color.putalpha(alpha)
        return chequered(color)
    img = Image.open(io.BytesIO(data))
    return chequered(img) if img.mode == "RGBA" else img.convert("RGB")


def save(img: Image.Image, name: str) -> Path:
    img = img.copy()
    img.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    path = OUT / f"{name}.jpg"
    img.save(path, "JPEG", quality=80, optimize=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pictures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--var", type=Path, default=ROOT / "var" / "pictures")
    args = parser.parse_args(argv)
    shutil.rmtree(args.var, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    sources = photos()
    for name in ("coffee", "astronaut", "chelsea"):
        save(Image.open(io.BytesIO(sources[name])), f"photo-{name}")
    server = PhotoServer(lambda path: sources.get(path.strip("/").removesuffix(".jpg")))
    try:
        with LocalStack(args.var, local_env(args.var), own_redis=True) as stack:
            key = stack.add_vendor("docs")
            procs = stack.start_workers(1)
            stack.start_api(processes=1)
            stack.wait_workers(procs)
            client = stack.client(key, timeout=120)
            stack.callback(client.close)
            http = stack.http(key)
            stack.callback(http.close)
            for name, (photo, options) in SHOTS.items():
                options = dict(options)
                if "bg_image_url" in options:
                    options["bg_image_url"] = server.url(options["bg_image_url"])
                job = client.remove_background(server.url(f"/{photo}.jpg"), record_id=name, **options).wait()
                if job.state != "finished":
                    raise SystemExit(f"{name}: {job.state} {job.error}")
                result = http.get(f"/api/image-queue/job/{job.id}").json()["result"]
                data = http.get(result["url"]).content
                path = save(picture(data, result["format"]), name)
                compliance = result.get("compliance")
                print(
                    f"{name:22} {photo:10} {result['width']}x{result['height']} {result['format']:4} "
                    f"{len(data):>9} bytes  confidence {result.get('confidence')} "
                    f"review {result.get('review')}"
                    + (f"  compliant {compliance['compliant']} {compliance['failed']}" if compliance else "")
                    + f"  -> {path.relative_to(ROOT)}"
                )
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
