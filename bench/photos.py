"""The bench's photos: scikit-image samples resized to the sizes measured, served under distinct URLs."""

from __future__ import annotations

import io
import itertools
import re

#: Name of each size measured, its pixels, and the scikit-image sample it is made from.
SIZES = {
    "512x512": ((512, 512), "astronaut"),
    "2048x1536": ((2048, 1536), "chelsea"),
    "4000x3000": ((4000, 3000), "coffee"),
}
#: The photo of the light jobs (resized to 64x64 by them).
SMALL = "small"

_PATH = re.compile(r"^/p/([\w-]+)/\d+\.jpg$")


def _jpeg(image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_photo(size: str) -> bytes:
    """A JPEG (quality 90) of ``size`` (one of ``SIZES``, or ``small``: astronaut at 128x128)."""
    from PIL import Image
    from skimage import data

    if size == SMALL:
        return _jpeg(Image.fromarray(data.astronaut()).resize((128, 128), Image.Resampling.LANCZOS))
    pixels, sample = SIZES[size]
    return _jpeg(Image.fromarray(getattr(data, sample)()).resize(pixels, Image.Resampling.LANCZOS))


class Photos:
    """The photos made so far, at ``/p/<size>/<n>.jpg``: a new ``n`` per job, so each job really fetches."""

    def __init__(self, sizes):
        self.data = {size: make_photo(size) for size in sizes}
        self.base = ""
        self._next = itertools.count(1)  # next() on it is atomic: latency clients share it

    def resolve(self, path: str) -> bytes | None:
        """The bytes served at ``path``, for the photo server."""
        match = _PATH.match(path)
        return self.data.get(match.group(1)) if match else None

    def url(self, size: str) -> str:
        """A URL of the ``size`` photo that no job has fetched before."""
        return f"{self.base}/p/{size}/{next(self._next)}.jpg"

    def items(self, size: str, count: int, prefix: str, options: dict | None = None) -> list[dict]:
        """``count`` bulk items of the ``size`` photo, each with its own URL and record id."""
        return [
            {
                "record_id": f"{prefix}-{i}",
                "image_url": self.url(size),
                **({"options": options} if options else {}),
            }
            for i in range(count)
        ]
