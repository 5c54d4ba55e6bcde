"""A zip result (remove-bg ``format: "zip"``) made into one RGBA PNG, as remove.bg's SDKs do.

The zip holds ``color.jpg`` (the colours; white or the job's ``bgcolor``
where the cut-out is transparent) and ``alpha.png`` (8-bit greyscale): put
in as the JPEG's alpha channel, the alpha makes the cut-out. Pillow is
imported only when a zip is unpacked, so that the client needs httpx alone.
"""

from __future__ import annotations

import io
import zipfile

from .errors import UnpackError

COLOR, ALPHA = "color.jpg", "alpha.png"
#: The most bytes read of either member: a 10,000 px square's alpha is 100 MB raw, much less as a PNG.
MAX_MEMBER_BYTES = 256 * 2**20


def is_zip(data: bytes) -> bool:
    """Whether ``data`` starts as a zip file does."""
    return data[:4] == b"PK\x03\x04"


def unpack_zip(data: bytes) -> bytes:
    """The RGBA PNG that the zip result ``data`` holds: ``color.jpg`` with ``alpha.png`` as its alpha."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("unpacking a zip result needs Pillow: pip install pillow") from exc
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            color_bytes, alpha_bytes = _member(archive, COLOR), _member(archive, ALPHA)
    except zipfile.BadZipFile as exc:
        raise UnpackError(f"not a zip file: {exc}") from exc
    try:
        color, alpha = Image.open(io.BytesIO(color_bytes)), Image.open(io.BytesIO(alpha_bytes))
        color.load()
        alpha.load()
    except (OSError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise UnpackError(f"{COLOR} or {ALPHA} cannot be read: {exc}") from exc
    if color.size != alpha.size:
        raise UnpackError(
            f"{COLOR} is {color.size[0]}x{color.size[1]}, {ALPHA} {alpha.size[0]}x{alpha.size[1]}"
        )
    rgba = color.convert("RGB")
    rgba.putalpha(alpha if alpha.mode == "L" else alpha.convert("L"))
    out = io.BytesIO()
    rgba.save(out, "PNG", icc_profile=color.info.get("icc_profile"))
    return out.getvalue()


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise UnpackError(
            f"the zip has no {name} (it holds {', '.join(archive.namelist()) or 'nothing'})"
        ) from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise UnpackError(f"{name} is {info.file_size} bytes, over {MAX_MEMBER_BYTES}")
    return archive.read(info)
