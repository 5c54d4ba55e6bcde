"""Face-crop geometry: where the crop goes around a face, and cutting it out. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Face:
    """A detected face: box ``(x, y, w, h)`` in the source photo's pixels and the detector's score."""

    box: tuple[int, int, int, int]
    score: float
    #: BlazeFace's points in the photo's pixels: right eye, left eye, nose, mouth, right ear, left ear.
    keypoints: tuple[tuple[float, float], ...] = ()

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


def select_face(faces: list[Face], how: str) -> Face:
    """Pick the ``largest`` face or the ``most_confident`` one."""
    if how == "most_confident":
        return max(faces, key=lambda f: (f.score, f.area))
    return max(faces, key=lambda f: (f.area, f.score))


def crop_box(
    face: tuple[int, int, int, int], aspect: float, face_height: float, face_center_y: float
) -> tuple[int, int, int, int]:
    """The crop ``(left, top, width, height)`` that puts the face at ``face_height`` of its height.

    The face's centre sits at mid-width and at ``face_center_y`` from the top;
    the box may run past the photo's edges (the caller pads those parts).
    """
    x, y, w, h = face
    crop_h = h / face_height
    crop_w = crop_h * aspect
    cx, cy = x + w / 2, y + h / 2
    left = cx - crop_w / 2
    top = cy - face_center_y * crop_h
    return round(left), round(top), max(1, round(crop_w)), max(1, round(crop_h))


#: Eye-to-crown distance as a multiple of eye-to-chin for the default crop, which has no mask:
#: astronaut() measured 1.12 with her hair; more leaves room for fuller hair.
CROWN_REACH = 1.25
#: Room kept above that crown and below the chin, as a fraction of the head's height.
HEAD_MARGIN = 0.05


def keep_head(
    box: tuple[int, int, int, int], eye_y: float, chin_y: float, aspect: float
) -> tuple[tuple[int, int, int, int], bool]:
    """Grow ``box`` (same aspect, same centre line) until crown to chin fits, with a margin; and whether
    the room it needs above the crown runs past the photo's top edge.

    The crown is estimated from the eyes and the chin (``CROWN_REACH``): the
    default crop matts nothing, and BlazeFace's box ends at the brows.
    """
    left, top, width, height = box
    crown = eye_y - CROWN_REACH * (chin_y - eye_y)
    margin = HEAD_MARGIN * (chin_y - crown)
    new_top = min(top, crown - margin)
    bottom = max(top + height, chin_y + margin)
    new_height = bottom - new_top
    if new_top == top and new_height == height:
        return box, crown - margin < 0
    new_width = new_height * aspect
    centre = left + width / 2
    grown = (round(centre - new_width / 2), round(new_top), max(1, round(new_width)), round(new_height))
    return grown, crown - margin < 0


def cut(img: Image.Image, box: tuple[int, int, int, int], fill: tuple[int, ...]) -> Image.Image:
    """Cut ``box`` out of ``img``, filling whatever lies outside the photo with ``fill``."""
    left, top, width, height = box
    if left >= 0 and top >= 0 and left + width <= img.width and top + height <= img.height:
        return img.crop((left, top, left + width, top + height))
    canvas = Image.new(img.mode, (width, height), fill[: len(img.mode)])
    inside = img.crop(
        (max(left, 0), max(top, 0), min(left + width, img.width), min(top + height, img.height))
    )
    canvas.paste(inside, (max(0, -left), max(0, -top)))
    return canvas


def windows(width: int, height: int, levels: int = 3, smallest: int = 160) -> list[tuple[int, int, int]]:
    """Square windows ``(left, top, side)`` over the photo at a few scales, half-overlapping.

    BlazeFace (short range) sees its input at 128x128, so a face under ~1/10 of
    the frame is lost; looking again at squares of the short side, its half and
    its quarter finds faces in wide group shots and large photos. Each look
    costs a few milliseconds.
    """
    found: list[tuple[int, int, int]] = []
    side = min(width, height)
    for _ in range(levels):
        if side < smallest:
            break
        step = max(1, side // 2)
        for top in sorted({*range(0, height - side + 1, step), height - side}):
            for left in sorted({*range(0, width - side + 1, step), width - side}):
                found.append((left, top, side))
        side //= 2
    return found


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter) if inter else 0.0


def merge_faces(faces: list[Face], overlap: float = 0.3) -> list[Face]:
    """Non-maximum suppression: one face per person when several windows saw it.

    A box mostly inside a larger one counts as the same face too, since a small
    window can see a fragment of a big face.
    """
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: (f.score, f.area), reverse=True):
        same = False
        for other in kept:
            x, y, w, h = face.box
            ox, oy, ow, oh = other.box
            inside = max(0, min(x + w, ox + ow) - max(x, ox)) * max(0, min(y + h, oy + oh) - max(y, oy))
            if _iou(face.box, other.box) > overlap or inside > 0.6 * min(face.area, other.area):
                same = True
                break
        if not same:
            kept.append(face)
    return kept
