"""Decode, validate and encode images: pure functions, bytes in and bytes out."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import cv2
import numpy as np
from isal import isal_zlib
from PIL import Image, ImageOps, UnidentifiedImageError

from imgproc.errors import PermanentError

#: Formats a vendor may send; anything else (SVG, HTML, PDF...) is unsupported_image.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
#: Output formats and their Pillow names and MIME types.
OUTPUT_FORMATS = {"png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp"), "jpg": ("JPEG", "image/jpeg")}


def parse_color(value: str) -> tuple[int, int, int]:
    """Turn ``#rrggbb`` into an RGB tuple (the caller has validated the string)."""
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode the first frame of an image, upright, as RGB or RGBA.

    The pixel count is checked from the header before any pixel is decoded, so
    a decompression bomb costs nothing; the format is decided from the bytes.
    """
    return _load(_open(data, max_pixels))


def decode_rgb(data: bytes, max_pixels: int) -> np.ndarray:
    """The upright RGB pixels of an image as one array, checked as ``decode`` checks them.

    A complete colour JPEG goes straight from OpenCV's decoder into a packed
    array: Pillow decodes into 4 bytes a pixel and the array is a copy of that,
    84 MB of new memory and 60-80 ms more per 12-megapixel photo (measured).
    OpenCV turns the pixels by the EXIF orientation, as ``exif_transpose`` does.
    Anything else (PNG, grey or CMYK JPEG, a truncated one) goes through Pillow.
    """
    img = _open(data, max_pixels)
    # A JPEG cut short lacks its end marker; OpenCV would fill the rest in grey, Pillow refuses it.
    if img.format == "JPEG" and img.mode == "RGB" and data.rstrip(b"\0").endswith(b"\xff\xd9"):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
    return rgb_array(_load(img))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only, and refuse what is empty, not an accepted format, or too large."""
    if not data:
        raise PermanentError("the image is empty (0 bytes)", code="unsupported_image")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and at 2x errors) on huge images; our own cap below is lower.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PermanentError(f"image over the pixel limit: {exc}", code="image_too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise PermanentError(
            f"not a decodable image ({type(exc).__name__})", code="unsupported_image"
        ) from None
    if img.format not in ACCEPTED_FORMATS:
        raise PermanentError(f"image format {img.format} is not accepted", code="unsupported_image")
    width, height = img.size
    if width * height > max_pixels:
        raise PermanentError(
            f"{width}x{height} is {width * height} pixels, over the limit of {max_pixels}",
            code="image_too_large",
        )
    if width == 0 or height == 0:
        raise PermanentError("the image has no pixels", code="unsupported_image")
    return img


def _load(img: Image.Image) -> Image.Image:
    try:
        img.seek(0)  # animated GIF/WebP/APNG: the first frame
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # a copy of 12 MP costs 20 ms when nothing turns
        return _normalise_mode(img)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise PermanentError(f"the image is truncated or corrupt ({exc})", code="unsupported_image") from None


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Bring CMYK, 16-bit, grey, palette and bilevel images to RGB, or RGBA when they carry alpha."""
    if img.mode in ("RGB", "RGBA"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.uint32)
        peak = 65535 if img.mode.startswith("I;16") or arr.max() > 255 else 255
        grey = (arr * 255 // peak).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("LA", "PA", "La", "RGBa"):
        return img.convert("RGBA")
    return img.convert("RGB")  # CMYK (Pillow applies no profile), L, 1, YCbCr, LAB, HSV


def flatten(img: Image.Image, color: tuple[int, int, int]) -> Image.Image:
    """Composite an RGBA image over a solid colour, giving RGB."""
    if img.mode != "RGBA":
        return img.convert("RGB")
    canvas = Image.new("RGB", img.size, color)
    canvas.paste(img, mask=img.getchannel("A"))
    return canvas


def encode(
    img: Image.Image | np.ndarray,
    fmt: str,
    *,
    quality: int = 85,
    png_level: int = 1,
    bgcolor: tuple[int, int, int] = (255, 255, 255),
    exif: bytes | None = None,
    icc_profile: bytes | None = None,
    dpi: int | None = None,
) -> bytes:
    """Encode an image or an RGB/RGBA array to ``png``, ``webp`` or ``jpg``.

    JPEG has no alpha, so it is flattened over ``bgcolor``. PNG without
    metadata goes through ``encode_png``, six times faster than Pillow's.
    ``dpi`` goes into JPEG's JFIF header and PNG's pHYs chunk (WebP has no field for it).
    """
    if fmt == "png" and not exif and not icc_profile:
        pixels = np.asarray(img) if isinstance(img, Image.Image) and img.mode in ("RGB", "RGBA") else img
        if isinstance(pixels, np.ndarray):
            return encode_png(pixels, png_level, dpi)
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    pil_format, _ = OUTPUT_FORMATS[fmt]
    params: dict = {}
    if fmt == "jpg":
        img = flatten(img, bgcolor)
        params = {"quality": quality}
    elif fmt == "webp":
        params = {"quality": quality, "method": 4}
    else:
        params = {"compress_level": png_level}
    if exif:
        params["exif"] = exif
    if icc_profile:
        params["icc_profile"] = icc_profile
    if dpi and fmt != "webp":
        params["dpi"] = (dpi, dpi)
    out = io.BytesIO()
    img.save(out, pil_format, **params)
    return out.getvalue()


#: Rows filtered and deflated at a time by encode_png: a strip buffer of ~4 MB at 4000 px, reused.
PNG_STRIP_ROWS = 256


def encode_jpeg_within(
    img: Image.Image | np.ndarray, byte_range: tuple[int, int], *, dpi: int | None = None
) -> tuple[bytes, int]:
    """The JPEG of the highest quality (1-100) whose size is at most ``byte_range[1]``, and that quality.

    A bisection: seven encodes of a 358x441 photo, about 15 ms. When even
    quality 1 is too large, that file is returned and the caller's size
    check fails; a file below ``byte_range[0]`` at quality 100 likewise.
    """
    lowest, highest = 1, 100
    best: tuple[bytes, int] | None = None
    while lowest <= highest:
        quality = (lowest + highest) // 2
        data = encode(img, "jpg", quality=quality, dpi=dpi)
        if len(data) <= byte_range[1]:
            best, lowest = (data, quality), quality + 1
        else:
            highest = quality - 1
    return best or (encode(img, "jpg", quality=1, dpi=dpi), 1)


def encode_png(pixels: np.ndarray, level: int = 1, dpi: int | None = None) -> bytes:
    """A PNG of an RGB, RGBA or greyscale uint8 array: rows "Up"-filtered in numpy, deflated by ISA-L.

    Pillow's encoder took 0.60 s at zlib level 1 for a 4000x3000 RGBA cut-out
    (most of the work outside the model); this took 0.11 s and the file was
    10% smaller (measured). Strips of rows go through one compressor, so no
    filtered copy of the whole image is made (48 MB of new pages at 12 MP).
    ISA-L has levels 0-3; higher ones are capped at 3.
    """
    if pixels.ndim == 2:  # greyscale: a mask
        pixels = pixels[..., np.newaxis]
    height, width, channels = pixels.shape
    flat = pixels.reshape(height, width * channels)
    strip = np.empty((min(PNG_STRIP_ROWS, height), width * channels + 1), np.uint8)
    strip[:, 0] = 2  # PNG filter type "Up": each byte minus the one above (uint8 wraps as PNG wants)
    deflate = isal_zlib.compressobj(min(max(level, 0), 3))
    parts = []
    for top in range(0, height, PNG_STRIP_ROWS):
        rows = strip[: min(PNG_STRIP_ROWS, height - top)]
        n = len(rows)
        if top == 0:
            rows[0, 1:] = flat[0]
            np.subtract(flat[1:n], flat[: n - 1], out=rows[1:, 1:])
        else:
            np.subtract(flat[top : top + n], flat[top - 1 : top + n - 1], out=rows[:, 1:])
        parts.append(deflate.compress(rows))
    parts.append(deflate.flush())
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    # pHYs: pixels per metre on both axes, unit 1 (metre).
    phys = _chunk(b"pHYs", struct.pack(">IIB", round(dpi / 0.0254), round(dpi / 0.0254), 1)) if dpi else b""
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            phys,
            _chunk(b"IDAT", b"".join(parts)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def rgb_array(img: Image.Image) -> np.ndarray:
    """The RGB pixels of an image as an array, without a conversion when it is RGB already."""
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def over_color(rgb: np.ndarray, alpha: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """Composite RGB pixels with an alpha mask over a solid colour, in integer arithmetic."""
    a = alpha[..., np.newaxis].astype(np.uint16)
    out = rgb * a + np.array(color, np.uint16) * (255 - a)
    out += 127
    out //= 255
    return out.astype(np.uint8)


def downscale(img: Image.Image, longest: int) -> Image.Image:
    """Shrink so that the longest side is at most ``longest`` pixels; never enlarges."""
    if max(img.size) <= longest:
        return img
    return ImageOps.contain(img, (longest, longest), Image.Resampling.LANCZOS)


def resized_size(size: tuple[int, int], box: tuple[int, int], fit: str) -> tuple[int, int]:
    """The width and height ``resize`` gives an image of ``size``, without resizing it."""
    if fit == "cover":
        return box
    ratio = min(box[0] / size[0], box[1] / size[1])
    return max(1, round(size[0] * ratio)), max(1, round(size[1] * ratio))


def resize(img: Image.Image, box: tuple[int, int], fit: str) -> Image.Image:
    """Fit into ``box`` (``contain``) or fill it and centre-crop (``cover``), with Pillow's ImageOps."""
    if fit == "cover":
        return ImageOps.fit(img, box, Image.Resampling.LANCZOS)
    return ImageOps.contain(img, box, Image.Resampling.LANCZOS)
