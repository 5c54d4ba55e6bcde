"""Background removal to a spec (API.md ``remove-bg``): one model run, one resample, the outputs asked for.

The order is fixed by what each step needs: the mask (the model's, or the
photo's own alpha), its confidence (from the raw mask, before any clean-up
hides doubt), the edge refined, then the layout (``imgproc.processing.layout``), the background
and shadow on the canvas, the encoding, and a marketplace preset's report.
"""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from imgproc.errors import PermanentError
from imgproc.presets import MARKETPLACES

from . import confidence, imaging, layout, marketplace, matting
from .models import Matting

#: Quality of a zip's ``color.jpg``, with full-resolution chroma: its colours recombine with
#: ``alpha.png`` close to the RGBA result (README: the zip output, the error measured).
ZIP_JPEG_QUALITY = 95


@dataclass
class Cutout:
    """What ``remove_background`` made: the encoded bytes, their format and size, and what the job reports."""

    data: bytes
    format: str
    width: int
    height: int
    extra: dict[str, Any]
    source_pixels: int
    encode_seconds: float
    #: Seconds of the layout, background, shadow and report: what a spec adds to a plain cut-out.
    layout_seconds: float


def remove_background(data: bytes, opts: dict, tools: Any) -> Cutout:
    """The cut-out of ``data`` as ``opts`` (validated remove-bg options) ask; ``tools``: operations.Tools."""
    rgb, photo_alpha, source = _decode(data, opts, tools.max_pixels)
    background_photo = _background_photo(opts, tools)  # before the model: a bad URL fails fast
    extra: dict[str, Any] = {}
    if photo_alpha is not None:  # keep_alpha: auto, and the photo has transparency of its own
        mask = photo_alpha
        extra["alpha_source"] = "photo"
    else:
        remover: Matting | None = tools.remover
        if remover is None:
            raise PermanentError("this worker has no background-removal model", code="invalid_options")
        mask = remover.mask(rgb, opts["model"])
        extra["model"] = opts["model"]
    score = confidence.score(mask)
    extra["confidence"] = score
    extra["review"] = bool(score < tools.review_threshold)
    started = time.perf_counter()
    rgb, mask, clean = refine(rgb, mask, opts, tools)
    placement = layout.place(mask, opts)
    alpha = layout.resample(mask, placement)
    if placement.subject_box is not None:
        extra["subject_box"] = list(placement.subject_box)
    width, height = placement.canvas
    if opts["channels"] == "alpha":
        encode_started = time.perf_counter()
        encoded = imaging.encode_png(alpha, tools.png_level)
        seconds = time.perf_counter() - encode_started
        return Cutout(encoded, "png", width, height, extra, source, seconds, encode_started - started)
    # Decontaminated at the smaller of the photo's and the output's resolution: a resample averages
    # subject and background alike, so an edge pixel still mixes them as a * F + (1 - a) * B
    # (12 MP to 2000x2000: 95 ms at the photo's size, a third of it at the output's).
    if not clean and placement.factor < 1:
        subject = layout.decontaminate(layout.resample(rgb, placement), alpha)
    else:
        subject = layout.resample(rgb if clean else layout.decontaminate(rgb, mask), placement)
    background = _background(rgb, placement, opts, background_photo)
    shade = layout.shadow(alpha, placement.subject_box) if opts["shadow"] else None
    out = layout.compose(subject, alpha, background, shade)
    layout_seconds = time.perf_counter() - started
    encode_started = time.perf_counter()
    fill = imaging.parse_color(opts["bgcolor"] or "#ffffff")
    if opts["format"] == "zip":
        encoded = zip_of(out, fill, tools.png_level)
    else:
        encoded = imaging.encode(out, opts["format"], png_level=tools.png_level, bgcolor=fill)
    encode_seconds = time.perf_counter() - encode_started
    if opts.get("preset"):
        report_started = time.perf_counter()
        seen = _as_seen(encoded, out, opts["format"], tools.max_pixels)
        # The file a seller uploads: a zip's color.jpg, else the result itself.
        size = len(_zipped(encoded, "color.jpg")) if opts["format"] == "zip" else len(encoded)
        extra["compliance"] = marketplace.report(
            MARKETPLACES[opts["preset"]], seen, alpha, opts["format"], True, size
        )
        layout_seconds += time.perf_counter() - report_started
    return Cutout(encoded, opts["format"], width, height, extra, source, encode_seconds, layout_seconds)


def refine(
    rgb: np.ndarray, mask: np.ndarray, opts: dict, tools: Any = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The mask cleaned or matted as the options ask; True when the colours at its edge are the subject's
    own already (alpha matting estimates them), else they are still to be decontaminated."""
    if opts["post_process_mask"]:
        mask = matting.post_process(mask)
    if opts["alpha_matting"]:
        if tools is None or not tools.matting_cache:
            raise PermanentError("this worker has no cache for alpha matting", code="invalid_options")
        return (*matting.alpha_matte(rgb, mask, tools.matting_cache, tools.max_matting_pixels), True)
    return rgb, mask, False


def zip_of(rgba: np.ndarray, fill: tuple[int, int, int], png_level: int = 1) -> bytes:
    """remove.bg's zip: ``color.jpg`` (the colours, ``fill`` where nothing is) and ``alpha.png`` (the mask).

    Together they are the RGBA result: put ``alpha.png`` in as the alpha
    channel of ``color.jpg`` (``imgproc.client`` and ``imgproc submit`` do).
    A JPEG and a greyscale PNG are several times smaller than one RGBA PNG.
    """
    if rgba.shape[2] == 3:  # opaque already: a shadow over nothing still has alpha, a colour does not
        colour, alpha = rgba, np.full(rgba.shape[:2], 255, np.uint8)
    else:
        colour, alpha = np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
        colour = colour.copy()
        colour[alpha == 0] = fill
    jpeg = io.BytesIO()
    Image.fromarray(colour).save(jpeg, "JPEG", quality=ZIP_JPEG_QUALITY, subsampling=0)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:  # both are compressed already
        archive.writestr("color.jpg", jpeg.getvalue())
        archive.writestr("alpha.png", imaging.encode_png(alpha, png_level))
    return out.getvalue()


def _decode(data: bytes, opts: dict, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The photo's RGB pixels (shrunk to ``max_size``), its own alpha when it is kept, and its pixel count."""
    if opts["max_size"] or opts.get("keep_alpha") == "auto":
        img = imaging.decode(data, max_pixels)
        source = img.width * img.height
        if opts["max_size"]:  # shrunk before inference: less to resize and encode
            img = imaging.downscale(img, opts["max_size"])
        if opts.get("keep_alpha") == "auto" and img.mode == "RGBA":
            alpha = np.asarray(img.getchannel("A"))
            if int(alpha.min()) < 255:
                return imaging.rgb_array(img), np.ascontiguousarray(alpha), source
        return imaging.rgb_array(img), None, source
    rgb = imaging.decode_rgb(data, max_pixels)
    return rgb, None, rgb.shape[0] * rgb.shape[1]


def _background_photo(opts: dict, tools: Any) -> np.ndarray | None:
    if not opts.get("bg_image_url"):
        return None
    if tools.fetch is None:
        raise PermanentError("this worker cannot fetch a background photo", code="internal")
    # The same fetcher as the photo's: private addresses are fetch_forbidden, sizes bounded.
    return imaging.decode_rgb(tools.fetch(opts["bg_image_url"]), tools.max_pixels)


def _background(
    rgb: np.ndarray, placement: layout.Placement, opts: dict, photo: np.ndarray | None
) -> np.ndarray | None:
    """What lies behind the subject on the canvas, or None for transparency (a zip's colour is set apart)."""
    width, height = placement.canvas
    if photo is not None:
        return layout.cover(photo, (width, height))
    if opts.get("bg_blur"):
        return layout.blurred(rgb, placement, opts["bg_blur"])
    if opts["bgcolor"] and opts["format"] != "zip":
        return np.full((height, width, 3), imaging.parse_color(opts["bgcolor"]), np.uint8)
    return None


def _as_seen(encoded: bytes, out: np.ndarray, fmt: str, max_pixels: int) -> np.ndarray:
    """The result's colours as a viewer sees them: a JPEG decoded again (its losses included), a zip's
    ``color.jpg``, a transparent result's colours (black where nothing is)."""
    if fmt == "jpg":
        return imaging.decode_rgb(encoded, max_pixels)
    if fmt == "zip":
        return imaging.decode_rgb(_zipped(encoded, "color.jpg"), max_pixels)
    if out.shape[2] == 4:
        return np.ascontiguousarray(out[..., :3])
    return out


def _zipped(archive: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return opened.read(name)


def recombine(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The RGBA image of a zip's two parts (what the client does after unpacking)."""
    out = cv2.cvtColor(np.ascontiguousarray(color), cv2.COLOR_RGB2RGBA)
    cv2.mixChannels([alpha], [out], [0, 3])
    return out
