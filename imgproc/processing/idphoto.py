"""An ID photo to a preset in one pass: measure, level, matte the region, place, fill, resize, encode, report.

The photo is decoded once. BlazeFace finds the faces; the face mesh gives
the eyes and the chin; a roll over ``ROLL_MIN`` is levelled by turning the
photo about its centre (the "levelled photo" of ``crop_box``) and the mesh
measures again on the levelled face. Only the region that can hold the crop
is turned, scaled and matted (``mask_first`` mattes the whole photo first,
for the comparison in the README); the crown is the top of the mask above
the forehead. The crop puts head height and eye line mid-range, fills what
lies past the photo with the preset's colour, and goes to the preset's
pixels in one resampling.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from imgproc.errors import PermanentError
from imgproc.optiontypes import aspect_ratio
from imgproc.presets import PRESETS, Preset

from . import imaging, sheet
from .compliance import Measured, background_std, report
from .crop import crop_box, select_face
from .landmarks import apply, crown_from_mask, invert, rotation_about, then
from .models import FaceFinder, Matting

#: Degrees of roll below which the photo is not turned (a resampling for nothing anyone sees).
ROLL_MIN = 0.5
#: Eye-to-crown distance as a multiple of eye-to-chin: the range a matted region must hold
#: (0.9 a shaven head, 1.6 tall hair; astronaut() measured 1.12).
CROWN_SPAN = (0.9, 1.6)
#: Where the mask shows no hair above the forehead, the crown is taken this far above the eyes.
CROWN_GUESS = 1.15
#: Extra room around the region, as a fraction of its height.
REGION_MARGIN = 0.04
#: Longest side of the matted region (ISNet sees 1024x1024 whatever it gets).
REGION_SIDE = 1024


@dataclass(frozen=True)
class IdPhoto:
    """The encoded ID photo, its pixel size and what the result reports about it."""

    data: bytes
    width: int
    height: int
    extra: dict[str, Any]
    encode_seconds: float


def place(preset: Preset, crown: float, chin: float, eye: float) -> tuple[float, float, float]:
    """Head-height ratio, eye line and crop height for ``preset``: mid-range where the top margin allows.

    Tries a 21x21 grid over both ranges and takes the point nearest their
    middles whose top margin is inside the preset's; with none, the one that
    misses the margin by least (the report then says so).
    """
    head = max(chin - crown, 1.0)
    (h0, h1), (e0, e1), (t0, t1) = preset.head, preset.eye_line, preset.top_margin
    best = None
    for hs in np.linspace(h0, h1, 21):
        for es in np.linspace(e0, e1, 21):
            height = head / hs
            margin = (crown - (eye - (1 - es) * height)) / height
            miss = max(0.0, t0 + 0.005 - margin, margin - (t1 - 0.005))
            far = ((hs - (h0 + h1) / 2) / (h1 - h0)) ** 2 + ((es - (e0 + e1) / 2) / (e1 - e0)) ** 2
            key = (round(miss, 6), far)
            if best is None or key < best[0]:
                best = (key, float(hs), float(es), height)
    _, hs, es, height = best
    return hs, es, height


def make(img: Image.Image, opts: dict, detector: FaceFinder, remover: Matting | None, bg_model: str,
         *, png_level: int = 1, mask_first: bool = False) -> IdPhoto:  # fmt: skip
    """The ID photo of ``img`` for ``opts['preset']``; options given beside it override the preset's."""
    preset = PRESETS[opts["preset"]]
    if remover is None:
        raise PermanentError("this worker has no background-removal model", code="invalid_options")
    rgb = imaging.rgb_array(img)
    faces = detector.detect(rgb)
    if not faces:
        raise PermanentError("no face was found in the photo", code="no_face_found")
    face = select_face(faces, opts["select"])

    # Measure, level, measure again on the levelled face.
    # The mesh's roll leans towards its input square's (by up to a degree on astronaut()), so the
    # roll to level is measured on a square already turned by a first guess (10 ms a pass).
    first = detector.landmarks(rgb, face)
    second = detector.landmarks(rgb, face, (*first.mesh_square()[:3], math.radians(first.roll)))
    rotation = second.roll if abs(second.roll) > ROLL_MIN else 0.0
    height_px, width_px = rgb.shape[:2]
    level = rotation_about((width_px / 2, height_px / 2), rotation)
    measured = detector.landmarks(rgb, face, (*second.mesh_square()[:3], math.radians(rotation)))
    residual = measured.roll - rotation
    head = measured.moved(level)
    eye_x, eye_y = head.eye_mid
    chin_y = head.chin[1]
    reach = max(chin_y - eye_y, 1.0)
    centre_x = float((head.mesh[:, 0].min() + head.mesh[:, 0].max()) / 2)

    out_w, out_h = opts["size"]
    aspect = out_w / out_h if opts["size"] else aspect_ratio(opts["aspect"])

    def box_for(crown_y: float) -> tuple[float, float, float, float]:
        if opts["face_height"] is not None or opts["face_center_y"] is not None:
            fx, fy, fw, fh = face.box
            (mx, my), = apply(level, [(fx + fw / 2, fy + fh / 2)])  # fmt: skip
            left, top, w, h = crop_box(
                (round(mx - fw / 2), round(my - fh / 2), fw, fh),
                aspect,
                opts["face_height"] or 0.5,
                0.42 if opts["face_center_y"] is None else opts["face_center_y"],
            )
            return float(left), float(top), float(w), float(h)
        _, es, crop_h = place(preset, crown_y, chin_y, eye_y)
        top = eye_y - (1 - es) * crop_h
        return centre_x - crop_h * aspect / 2, top, crop_h * aspect, crop_h

    # The region that holds the crop whatever the hair: the crops for both ends of CROWN_SPAN.
    boxes = [box_for(eye_y - k * reach) for k in CROWN_SPAN]
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    pad = REGION_MARGIN * (y1 - y0)
    corners = apply(level, [(0, 0), (width_px, 0), (0, height_px), (width_px, height_px)])
    x0, y0 = max(x0 - pad, corners[:, 0].min()), max(y0 - pad, corners[:, 1].min())
    x1, y1 = min(x1 + pad, corners[:, 0].max()), min(y1 + pad, corners[:, 1].max())
    scale = min(1.0, REGION_SIDE / max(x1 - x0, y1 - y0, 1.0))
    to_region = then(level, np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]]))
    region_size = (max(1, math.ceil((x1 - x0) * scale)), max(1, math.ceil((y1 - y0) * scale)))
    fill = imaging.parse_color(opts["bgcolor"])
    region = _warp(rgb, to_region, region_size, fill)
    inside = np.zeros(region_size[::-1], np.uint8)
    photo = [(0, 0), (width_px, 0), (width_px, height_px), (0, height_px)]
    cv2.fillConvexPoly(inside, np.round(apply(to_region, photo)).astype(np.int32), 255)
    if mask_first:
        mask = _warp(remover.mask(rgb, bg_model), to_region, region_size, 0)
    else:
        mask = remover.mask(region, bg_model)
    mask = np.minimum(mask, inside)

    # The crown: the top of the mask above the forehead, back in the levelled photo's pixels.
    in_region = head.moved(np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]]))
    found = crown_from_mask(mask, in_region)
    crown_estimated = found is None
    if found is None:
        crown = (eye_x, eye_y - CROWN_GUESS * reach)
    else:
        crown = (found[0] / scale + x0, found[1] / scale + y0)
    # Hair that runs into the photo's edge: the real crown may be higher than the mask can show.
    cut_off = found is not None and (found[1] < 2 or not inside[int(found[1]) - 2, int(found[0])])
    left, top, crop_w, crop_h = box_for(crown[1])

    # Upscaling: the crop's own pixels against the output's.
    factor = out_h / crop_h
    if factor > 1 and not opts["upscale"]:
        out_w, out_h = max(1, round(crop_w)), max(1, round(crop_h))
    to_out = np.array(
        [[out_w / crop_w, 0, -left * out_w / crop_w], [0, out_h / crop_h, -top * out_h / crop_h]]
    )
    region_to_out = then(invert(np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])), to_out)
    out_rgb = _warp(region, region_to_out, (out_w, out_h), fill)
    out_mask = _warp(mask, region_to_out, (out_w, out_h), 0)
    pixels = imaging.over_color(out_rgb, out_mask, fill) if opts["remove_background"] else out_rgb

    head_px = max(chin_y - crown[1], 1.0)
    measured_crop = Measured(
        faces=len(faces),
        roll=residual,
        head_height=head_px / crop_h,
        eye_line=1 - (eye_y - top) / crop_h,
        top_margin=(crown[1] - top) / crop_h,
        centre_offset=abs(centre_x - (left + crop_w / 2)) / crop_w,
        background_std=background_std(
            pixels,
            out_mask,
            round((chin_y - top) * out_h / crop_h),
            max(2, round(0.12 * head_px * out_h / crop_h)),
        ),
        width=out_w,
        height=out_h,
    )

    extra: dict[str, Any] = {}
    dpi, byte_range = preset.dpi, preset.byte_range
    if opts["max_kb"]:
        byte_range = (byte_range[0] if byte_range else 0, opts["max_kb"] * 1000)
    if opts.get("sheet"):
        # Copies at the photo's own size on paper: its pixels at the preset's dpi, in mm.
        mm = (out_w / preset.dpi * 25.4, out_h / preset.dpi * 25.4)
        pixels, copies = sheet.tile(pixels, mm)
        out_w, out_h, dpi, byte_range = pixels.shape[1], pixels.shape[0], sheet.SHEET_DPI, None
        extra["sheet"] = {"copies": copies, "inches": list(sheet.SHEET_INCHES), "dpi": dpi}
    started = time.perf_counter()
    if opts["format"] == "jpg" and byte_range:
        data, extra["quality"] = imaging.encode_jpeg_within(pixels, byte_range, dpi=dpi)
    else:
        data = imaging.encode(pixels, opts["format"], png_level=png_level, bgcolor=fill, dpi=dpi)
    encode_seconds = time.perf_counter() - started

    to_source = invert(level)
    compliance = report(preset, measured_crop, None if opts.get("sheet") else len(data), cut_off)
    compliance.update(
        crown=_points(to_source, [crown])[0],
        chin=_points(to_source, [head.chin])[0],
        eyes=_points(to_source, head.eyes),
        dpi=preset.dpi,
        crown_from="estimate" if crown_estimated else "photo_edge" if cut_off else "mask",
    )
    extra.update(
        {
            "faces": len(faces),
            "face_box": list(face.box),
            "face_score": round(face.score, 4),
            "crop_box": [round(left), round(top), round(crop_w), round(crop_h)],
            # bool(): factor is a NumPy float when the region met the photo's edge, and a NumPy
            # bool is no JSON (every status read of such a job answered 500).
            "upscaled": bool(factor > 1.01 and opts["upscale"]),
            "upscale_factor": round(float(factor), 3),
            "dpi": dpi,
            "model": bg_model,
            "compliance": compliance,
        }
    )
    if rotation:
        extra["rotation"] = round(float(rotation), 2)
    if cut_off or top < corners[:, 1].min():
        extra["head_near_top_edge"] = True
    return IdPhoto(data, out_w, out_h, extra, encode_seconds)


def _warp(src: np.ndarray, matrix: np.ndarray, size: tuple[int, int], fill) -> np.ndarray:
    """``src`` through a 2x3 map into an image of ``size``; averaged first where it shrinks by over 2x."""
    shrink = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if shrink < 0.5:
        # warpAffine samples without averaging: shrink by area first, then warp the rest of the way.
        factor = min(1.0, shrink * 1.5)
        src = cv2.resize(src, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        matrix = then(np.array([[1 / factor, 0, 0], [0, 1 / factor, 0]]), matrix)
    border = fill if np.ndim(fill) else (fill,)
    return cv2.warpAffine(
        np.ascontiguousarray(src), matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(v) for v in border) + (0,) * (4 - len(border)),
    )  # fmt: skip


def _points(matrix: np.ndarray, points) -> list:
    return [[round(float(x), 1), round(float(y), 1)] for x, y in apply(matrix, points)]
