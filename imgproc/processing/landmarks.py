"""What an ID standard measures on a head: eyes, chin and crown, and the frames they are measured in. Pure.

The eyes and the chin come from MediaPipe's face mesh (468 points, run by
``models.FaceDetector.landmarks`` on a square around the face, turned so the
eyes are level); the crown from the background-removal mask: the highest
foreground pixel above the forehead, hair included, as HivisionIDPhotos does.
On ``astronaut()`` BlazeFace's eye points from the whole frame sat 5-7 px
below the hand-measured pupils (a roll of 5.4 degrees where the pupils give
2), its best window's 1.5-3 px; the mesh's eye rings 1.3-2 px, and it has a
chin, which BlazeFace has not (README, "ID photos").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: Face-mesh indices: the rings around each eye (the subject's right eye is on the image's left),
#: the chin's lowest point and the top of the forehead.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
CHIN = 152
FOREHEAD = 10
#: Side of the face mesh's input, and how much larger than the face its square is (MediaPipe's 1.5).
MESH_INPUT = 192
MESH_SCALE = 1.5


@dataclass(frozen=True)
class Head:
    """Points of one head in one frame's pixels: eyes (image left first), chin, forehead, mesh."""

    eyes: tuple[tuple[float, float], tuple[float, float]]
    chin: tuple[float, float]
    forehead: tuple[float, float]
    mesh: np.ndarray

    @classmethod
    def of_mesh(cls, mesh: np.ndarray) -> Head:
        right, left = mesh[list(RIGHT_EYE)].mean(0), mesh[list(LEFT_EYE)].mean(0)
        return cls(
            (tuple(map(float, right)), tuple(map(float, left))),
            tuple(map(float, mesh[CHIN])),
            tuple(map(float, mesh[FOREHEAD])),
            mesh,
        )

    @property
    def roll(self) -> float:
        """Degrees the eye line turns clockwise on screen (image y grows downwards)."""
        (rx, ry), (lx, ly) = self.eyes
        return math.degrees(math.atan2(ly - ry, lx - rx))

    @property
    def eye_mid(self) -> tuple[float, float]:
        (rx, ry), (lx, ly) = self.eyes
        return (rx + lx) / 2, (ry + ly) / 2

    def moved(self, matrix: np.ndarray) -> Head:
        """The same head in another frame, ``matrix`` a 2x3 affine map into it."""
        return Head.of_mesh(apply(matrix, self.mesh))

    def mesh_square(self) -> tuple[float, float, float, float]:
        """Centre, side and angle (radians) of the mesh's next input square, from its own points."""
        angle = math.atan2(self.mesh[263][1] - self.mesh[33][1], self.mesh[263][0] - self.mesh[33][0])
        upright = apply(rotation_about((0.0, 0.0), math.degrees(angle)), self.mesh)
        lo, hi = upright.min(0), upright.max(0)
        centre = apply(rotation_about((0.0, 0.0), -math.degrees(angle)), ((lo + hi) / 2)[np.newaxis])[0]
        return float(centre[0]), float(centre[1]), float(max(hi - lo)) * MESH_SCALE, angle


def square_to_image(cx: float, cy: float, side: float, angle: float) -> np.ndarray:
    """The 2x3 affine map from the mesh's input pixels to the photo's, for a turned square."""
    c, s, k = math.cos(angle), math.sin(angle), side / MESH_INPUT
    half = MESH_INPUT / 2
    return np.array(
        [[c * k, -s * k, cx - (c - s) * k * half], [s * k, c * k, cy - (s + c) * k * half]], np.float64
    )


def rotation_about(centre: tuple[float, float], degrees: float) -> np.ndarray:
    """The 2x3 map that turns points by ``degrees`` counter-clockwise on screen about ``centre``.

    The same sense as Pillow's ``Image.rotate`` and OpenCV's ``getRotationMatrix2D``,
    so a head with a clockwise roll of r degrees is levelled by ``rotation_about(c, r)``.
    """
    return np.asarray(cv2.getRotationMatrix2D(centre, degrees, 1.0), np.float64)


def apply(matrix: np.ndarray, points) -> np.ndarray:
    """Points (N x 2) through a 2x3 affine map."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine map."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def then(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The 2x3 map of ``first`` followed by ``second``."""
    return (np.vstack([second, [0, 0, 1]]) @ np.vstack([first, [0, 0, 1]]))[:2]


def crown_from_mask(mask: np.ndarray, head: Head, threshold: int = 128) -> tuple[float, float] | None:
    """The highest foreground pixel above the forehead, in a band as wide as the eyes; None if none.

    Each column of the band is followed up from the forehead while it stays
    foreground, so a background object above the head never counts, and the
    highest of those tops is the crown (``mask`` in the same frame as ``head``).
    """
    (rx, _), (lx, _) = head.eyes
    half = max(abs(lx - rx) * 0.75, 2.0)
    cx = (rx + lx) / 2
    height, width = mask.shape[:2]
    x0, x1 = max(0, round(cx - half)), min(width, round(cx + half) + 1)
    start = min(height - 1, max(0, round(head.forehead[1])))
    if x1 <= x0 or start <= 0:
        return None
    band = mask[: start + 1, x0:x1] >= threshold
    if not band[start].any():
        return None
    # Rows from the forehead upwards: a column's top is the row above its first background pixel.
    upward = band[::-1]
    first_bg = np.where(upward.all(axis=0), upward.shape[0], np.argmax(~upward, axis=0))
    first_bg = np.where(band[start], first_bg, 0)
    best = int(np.argmax(first_bg))
    top = start - first_bg[best] + 1
    return float(x0 + best), float(top)
