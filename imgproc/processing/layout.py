"""A cut-out placed to a spec (API.md "Cut-outs to a spec"): where the subject goes, and what lies behind it.

``place`` turns the options into a ``Placement`` (pure arithmetic on the
subject's box), ``resample`` carries the photo's region onto the canvas in one
resize, and the background (a colour, another photo, the photo's own blurred)
and the shadow are composed there. Colour decontamination (at the smaller of
the photo's and the canvas' resolutions) keeps an edge from carrying the old
background's colour onto the new one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from imgproc.optiontypes import margin_values, position_fractions

#: Alpha above which a pixel belongs to the subject, for its box (a faint haze below it is not cropped to).
SUBJECT_ALPHA = 32
#: Alpha from which a pixel's colour is the subject's own (the edge band below it is decontaminated).
SOLID = 230
#: Alpha up to which a pixel shows the old background alone.
CLEAR = 10
#: Longest side of the copy the edge's nearby colours are estimated on: 512 costs a quarter of 1024
#: (9 MP: 81 -> 35 ms) and an 8 px block of a 4000 px photo is still inside a soft edge's reach.
ESTIMATE_SIDE = 512
#: The shadow: its drop and softness as shares of the subject's height, and its darkness (0-1).
SHADOW_DROP, SHADOW_BLUR, SHADOW_OPACITY = 0.02, 0.03, 0.45


@dataclass(frozen=True)
class Placement:
    """Where the photo's ``region`` lands: ``target`` on a canvas of ``canvas`` pixels."""

    #: x, y, width, height in the photo's pixels; may run past its edges (a margin at the photo's edge).
    region: tuple[int, int, int, int]
    canvas: tuple[int, int]
    #: x, y, width, height on the canvas.
    target: tuple[int, int, int, int]
    #: The subject's box on the canvas; None when the mask holds no subject.
    subject_box: tuple[int, int, int, int] | None

    @property
    def factor(self) -> float:
        """Output pixels per photo pixel."""
        return self.target[2] / self.region[2]

    @property
    def identity(self) -> bool:
        return self.region[2:] == self.canvas == self.target[2:] and self.region[:2] == (0, 0)


def subject_bounds(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """x, y, width, height of the pixels above ``SUBJECT_ALPHA``; None when there are none."""
    solid = cv2.threshold(alpha, SUBJECT_ALPHA, 255, cv2.THRESH_BINARY)[1]
    x, y, w, h = cv2.boundingRect(solid)  # of the non-zero pixels of an 8-bit image
    return (x, y, w, h) if w and h else None


def place(alpha: np.ndarray, opts: dict) -> Placement:
    """The placement the options ask for, from the subject's box in ``alpha`` (the photo's mask).

    ``crop`` (and ``scale``, which places the subject, as remove.bg's does)
    takes the subject's box plus ``crop_margin``; otherwise the whole photo is
    placed. The canvas is ``canvas`` or that region's own size; the region is
    fitted inside it, at ``scale`` of the fit when given, and sits at
    ``position`` in the room left (CSS ``background-position``).
    """
    height, width = alpha.shape[:2]
    box = subject_bounds(alpha)
    region = (0, 0, width, height)
    if box and (opts.get("crop") or opts.get("scale")):
        top, right, bottom, left = margin_values(opts.get("crop_margin") or "0px 0px 0px 0px", box[2], box[3])
        x0, y0 = math.floor(box[0] - left), math.floor(box[1] - top)
        x1, y1 = math.ceil(box[0] + box[2] + right), math.ceil(box[1] + box[3] + bottom)
        region = (x0, y0, x1 - x0, y1 - y0)
    canvas = tuple(opts["canvas"]) if opts.get("canvas") else region[2:]
    factor = 1.0
    if opts.get("canvas") or opts.get("scale"):
        factor = (opts.get("scale") or 1.0) * min(canvas[0] / region[2], canvas[1] / region[3])
    size = (max(1, round(region[2] * factor)), max(1, round(region[3] * factor)))
    fx, fy = position_fractions(opts.get("position") or "center")
    target = (round((canvas[0] - size[0]) * fx), round((canvas[1] - size[1]) * fy), *size)
    subject = None
    if box:
        sx, sy = target[2] / region[2], target[3] / region[3]
        x0, y0 = target[0] + (box[0] - region[0]) * sx, target[1] + (box[1] - region[1]) * sy
        x1, y1 = x0 + box[2] * sx, y0 + box[3] * sy
        subject = (round(x0), round(y0), round(x1) - round(x0), round(y1) - round(y0))
    return Placement(region, (int(canvas[0]), int(canvas[1])), target, subject)


def decontaminate(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The subject's own colours in its edge band, with the old background's taken out.

    An edge pixel shows ``a F + (1 - a) B``: the subject's colour F mixed with
    the background B behind it. B is estimated from the sure background near
    it and F from the sure subject near it (normalised box filters on a copy
    at most ``ESTIMATE_SIDE`` px wide, so a 12 MP photo costs tens of ms, not hundreds);
    the pixel becomes ``(I - (1 - a) B) / a``, leaning on the nearby subject's
    colour as ``a`` falls and the solve grows unsure. Only the band changes.
    """
    band = cv2.findNonZero(cv2.inRange(alpha, CLEAR + 1, SOLID - 1))  # 15x faster than np.nonzero
    if band is None:
        return rgb
    points = band.reshape(-1, 2)
    xs, ys = points[:, 0], points[:, 1]
    height, width = alpha.shape
    step = max(1, math.ceil(max(height, width) / ESTIMATE_SIDE))
    small = (max(1, width // step), max(1, height // step))
    # By a whole factor over whole blocks: OpenCV's fast path of INTER_AREA (the last step - 1 rows
    # and columns at most are left out of the estimate; their points read the nearest block).
    fitted = (slice(0, small[1] * step), slice(0, small[0] * step))
    rgb_small = cv2.resize(rgb[fitted], small, interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha_small = cv2.resize(alpha[fitted], small, interpolation=cv2.INTER_AREA)
    sy = np.minimum(ys // step, small[1] - 1)
    sx = np.minimum(xs // step, small[0] - 1)
    near_subject = _spread(rgb_small, (alpha_small >= SOLID).astype(np.float32), sy, sx)
    near_background = _spread(rgb_small, (alpha_small <= CLEAR).astype(np.float32), sy, sx)
    a = alpha[ys, xs].astype(np.float32)[:, None] / 255.0
    seen = rgb[ys, xs].astype(np.float32)
    solved = np.clip((seen - (1.0 - a) * near_background) / np.maximum(a, 1e-3), 0, 255)
    # Where no background is near (a band inside the subject), the solve has nothing to take out.
    solved = np.where(np.isnan(near_background), seen, solved)
    near_subject = np.where(np.isnan(near_subject), solved, near_subject)
    out = rgb.copy()
    out[ys, xs] = (a * solved + (1.0 - a) * near_subject + 0.5).astype(np.uint8)
    return out


def _spread(
    rgb: np.ndarray, weight: np.ndarray, ys: np.ndarray, xs: np.ndarray, rounds: int = 5
) -> np.ndarray:
    """The nearby colour of the weighted pixels at each point (``ys``, ``xs``); NaN where none is in reach.

    Box filters of the whole (small) image, read at the points only, wider each round for the
    points still without a colour.
    """
    out = np.full((len(ys), 3), np.nan, np.float32)
    missing = np.arange(len(ys))
    weighted = rgb * weight[..., None]
    radius = 3
    for _ in range(rounds):
        size = (2 * radius + 1, 2 * radius + 1)
        total = cv2.boxFilter(weight, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
        sums = cv2.boxFilter(weighted, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
        at = total[ys[missing], xs[missing]]
        found = at > 1e-3
        hits = missing[found]
        out[hits] = sums[ys[hits], xs[hits]] / at[found][:, None]
        missing = missing[~found]
        if not len(missing):
            break
        radius *= 3
    return out


def resample(pixels: np.ndarray, placement: Placement, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """The photo's ``region`` of ``pixels`` (RGB or alpha) resized once onto a blank canvas at ``target``.

    What the region holds beyond the photo is 0 (``BORDER_CONSTANT``: a transparent margin) or the
    photo's edge repeated (``BORDER_REPLICATE``: a background to blur).
    """
    if placement.identity:
        return pixels
    height, width = pixels.shape[:2]
    x, y, w, h = placement.region
    inside = pixels[max(0, y) : min(height, y + h), max(0, x) : min(width, x + w)]
    pad = (max(0, -y), max(0, y + h - height), max(0, -x), max(0, x + w - width))
    if any(pad):
        inside = cv2.copyMakeBorder(inside, *pad, border, value=0)
    tx, ty, tw, th = placement.target
    shrink = tw * th < w * h
    moved = cv2.resize(inside, (tw, th), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    canvas = np.zeros((placement.canvas[1], placement.canvas[0], *pixels.shape[2:]), pixels.dtype)
    # The target may run past the canvas (a position at the edge of a canvas smaller than the region).
    cx0, cy0 = max(0, tx), max(0, ty)
    cx1, cy1 = min(placement.canvas[0], tx + tw), min(placement.canvas[1], ty + th)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = moved[cy0 - ty : cy1 - ty, cx0 - tx : cx1 - tx]
    return canvas


def cover(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A background photo scaled to fill ``size`` and centre-cropped (CSS ``background-size: cover``)."""
    height, width = rgb.shape[:2]
    factor = max(size[0] / width, size[1] / height)
    w, h = max(size[0], round(width * factor)), max(size[1], round(height * factor))
    scaled = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    x, y = (w - size[0]) // 2, (h - size[1]) // 2
    return np.ascontiguousarray(scaled[y : y + size[1], x : x + size[0]])


def blurred(rgb: np.ndarray, placement: Placement, radius: int) -> np.ndarray:
    """The photo's own pixels placed as the subject is, over the whole canvas, blurred by ``radius`` px.

    Blurred small and brought back up: a Gaussian of sigma 50 on 12 MP takes seconds, on a copy a
    few times smaller tens of ms, and a blur hides the difference.
    """
    step = max(1.0, radius / 4)
    canvas = placement.canvas
    small = (max(1, round(canvas[0] / step)), max(1, round(canvas[1] / step)))
    # photo (px, py) -> small canvas ((tx + (px - rx) f) / step, ...)
    f = placement.factor
    (tx, ty), (rx, ry) = placement.target[:2], placement.region[:2]
    source, pre = rgb, 1.0
    whole = int(step / (2 * f))
    if whole >= 2:  # shrink with area averaging first (warpAffine samples, and would alias), by a
        # whole factor: OpenCV's fast path (12 MP by 3: 10 ms, where 1/2.7 took 45 ms)
        height, width = rgb.shape[:2]
        pre = 1 / whole
        fitted = rgb[: height - height % whole, : width - width % whole]
        source = cv2.resize(fitted, (width // whole, height // whole), interpolation=cv2.INTER_AREA)
    scale = f / step / pre
    matrix = np.float32([[scale, 0, (tx - rx * f) / step], [0, scale, (ty - ry * f) / step]])
    moved = cv2.warpAffine(source, matrix, small, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    sigma = max(0.5, radius / step / 2)
    soft = cv2.GaussianBlur(moved, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(soft, canvas, interpolation=cv2.INTER_LINEAR)


def shadow(alpha: np.ndarray, subject_box: tuple[int, int, int, int] | None) -> np.ndarray:
    """A soft drop shadow (0-255) of the subject's own alpha, shifted down and blurred."""
    if subject_box is None:
        return np.zeros_like(alpha)
    height = subject_box[3]
    drop, sigma = max(1, round(height * SHADOW_DROP)), max(1.0, height * SHADOW_BLUR)
    step = max(1, int(sigma // 4))
    small = cv2.resize(
        alpha, (max(1, alpha.shape[1] // step), max(1, alpha.shape[0] // step)), interpolation=cv2.INTER_AREA
    )
    moved = cv2.warpAffine(small, np.float32([[1, 0, 0], [0, 1, drop / step]]), small.shape[::-1])
    soft = cv2.GaussianBlur(moved, (0, 0), sigma / step)
    up = cv2.resize(soft, alpha.shape[::-1], interpolation=cv2.INTER_LINEAR)
    return (up.astype(np.float32) * SHADOW_OPACITY).astype(np.uint8)


def compose(
    subject: np.ndarray, alpha: np.ndarray, background: np.ndarray | None, shade: np.ndarray | None
) -> np.ndarray:
    """The subject over its shadow over the background: RGB when there is a background, else RGBA.

    OpenCV's blendLinear (SIMD, float weights) where there is a background: a 2000x2000 canvas in
    about 35 ms, where numpy's float arithmetic took 200-300 ms (measured).
    """
    if background is not None:
        below = background
        if shade is not None:  # the shadow is black: it darkens what is below by its share
            s = shade.astype(np.float32) * (1 / 255)
            below = cv2.blendLinear(background, np.zeros_like(background), 1.0 - s, s)
        a = alpha.astype(np.float32) * (1 / 255)
        return cv2.blendLinear(np.ascontiguousarray(subject), below, a, 1.0 - a)
    if shade is None:
        out = cv2.cvtColor(np.ascontiguousarray(subject), cv2.COLOR_RGB2RGBA)
        cv2.mixChannels([alpha], [out], [0, 3])
        return cv2.bitwise_and(out, out, mask=cv2.threshold(alpha, 0, 255, cv2.THRESH_BINARY)[1])
    # A shadow over nothing: it adds coverage and no colour (black), in premultiplied float.
    a = alpha.astype(np.float32)[..., None] / 255.0
    s = shade.astype(np.float32)[..., None] / 255.0
    total = a + s * (1.0 - a)
    colour = subject.astype(np.float32) * a / np.maximum(total, 1e-6)
    out = np.concatenate([colour, total * 255.0], axis=2)
    return (out + 0.5).astype(np.uint8)
