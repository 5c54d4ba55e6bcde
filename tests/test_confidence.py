"""The confidence score of a mask: synthetic masks of known doubts, and the real ISNet on two photos."""

import math

import cv2
import numpy as np
import pytest

from bench.confidence import PHOTOS, THRESHOLD
from imgproc.processing.confidence import parts, score

SIDE = 512


def disc(radius: float = 150, blur: float = 1.5, centre=(256, 256), shape=(SIDE, SIDE)) -> np.ndarray:
    """A white disc on black with a Gaussian edge of ``blur`` px (ISNet's edges are about this soft)."""
    mask = np.zeros(shape, np.float32)
    cv2.circle(mask, centre, round(radius), 255.0, -1, cv2.LINE_AA)
    if blur:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    return np.clip(mask + 0.5, 0, 255).astype(np.uint8)


def islands(count: int, seed: int = 0) -> np.ndarray:
    """A disc of 80 px and ``count`` specks of 12 px around it: background kept in pieces."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    cv2.circle(mask, (256, 256), 80, 255, -1)
    placed = [(256, 256)]
    while len(placed) < count + 1:
        c = tuple(int(v) for v in rng.integers(14, SIDE - 14, 2))
        if all(math.dist(c, p) > (96 if p == (256, 256) else 28) for p in placed):
            placed.append(c)
            cv2.circle(mask, c, 12, 255, -1)
    return mask


def pair(ratio: float = 0.9) -> np.ndarray:
    """Two discs apart, the second ``ratio`` of the first's radius: a pair of shoes, a set."""
    mask = np.zeros((SIDE, SIDE), np.uint8)
    cv2.circle(mask, (140, 256), 100, 255, -1)
    cv2.circle(mask, (380, 256), round(100 * ratio), 255, -1)
    return cv2.GaussianBlur(mask, (0, 0), 2)


def test_a_clean_soft_edged_disc_scores_high():
    assert score(disc()) >= 0.9
    assert score(disc(blur=0)) >= 0.95


def test_each_doubt_scores_under_the_clean_disc_and_the_threshold():
    clean = score(disc())
    rng = np.random.default_rng(1)
    noisy = np.clip(disc(blur=0).astype(np.int16) * 0.5 + rng.normal(64, 40, (SIDE, SIDE)), 0, 255)
    frame = np.full((SIDE, SIDE), 255, np.uint8)
    cv2.rectangle(frame, (0, 0), (60, 60), 0, -1)  # one corner out: still on all four edges
    doubtful = {
        "fuzzy": disc(blur=25),
        "noisy": noisy.astype(np.uint8),
        "many islands": islands(30),
        "touching every edge": frame,
        "empty": np.zeros((SIDE, SIDE), np.uint8),
        "a speck": disc(radius=10),
    }
    scores = {name: score(mask) for name, mask in doubtful.items()}
    assert all(s < THRESHOLD < clean for s in scores.values()), (clean, scores)
    assert scores["empty"] == scores["a speck"] == 0


def test_more_doubt_scores_lower():
    by_blur = [score(disc(blur=b)) for b in (1, 4, 10, 25)]
    by_islands = [score(islands(n)) for n in (0, 10, 30, 80)]
    assert by_blur == sorted(by_blur, reverse=True) and by_blur[0] > by_blur[-1] + 0.5, by_blur
    assert by_islands == sorted(by_islands, reverse=True) and by_islands[0] > by_islands[-1] + 0.5, by_islands


def test_parts_measure_what_they_name():
    ring = disc(radius=150, blur=0)
    cv2.circle(ring, (256, 256), 75, 0, -1)
    assert parts(ring)["holes"] == pytest.approx(75**2 / 150**2, abs=0.02)
    two = np.zeros((SIDE, SIDE), np.uint8)
    cv2.circle(two, (120, 256), 60, 255, -1)
    cv2.circle(two, (380, 256), 25, 255, -1)  # under a quarter of the other: an island
    assert parts(two)["islands"] == pytest.approx(25**2 / (25**2 + 60**2), abs=0.02)
    half_grey = disc(blur=0)
    half_grey[:, :256] //= 2  # the left half of the disc at alpha 127: neither in nor out
    assert parts(half_grey)["unsure"] == pytest.approx(0.5, abs=0.03)
    full = np.full((300, 400), 255, np.uint8)
    assert parts(full)["edges"] == 1 and score(full) == 0
    assert parts(disc())["area"] == pytest.approx(math.pi * 150**2 / SIDE**2, abs=0.01)


def test_a_pair_of_comparable_pieces_is_one_subject():
    """A pair of shoes or a set of bottles is a common product shot: no doubt in itself."""
    assert parts(pair())["islands"] == 0
    assert score(pair()) >= THRESHOLD
    assert score(pair(0.3)) < score(pair())  # a piece a tenth of the other's area: a speck kept


def test_a_12mp_mask_scores_as_its_small_copy():
    """The score reads a copy shrunk to 512 px; ISNet's mask grows with the photo, and so does its edge."""
    for small in (disc(), disc(blur=10), pair(0.3), disc(centre=(256, 40))):
        large = cv2.resize(small, (4000, 3000), interpolation=cv2.INTER_LINEAR)
        assert score(large) == pytest.approx(score(cv2.resize(small, (512, 384))), abs=0.02)


def test_a_mask_must_be_a_uint8_plane():
    for bad in (np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), np.zeros((0, 8), np.uint8)):
        with pytest.raises(ValueError):
            score(bad)


def test_real_isnet_scores_a_clean_photo_above_the_threshold_and_a_failed_one_below(models):
    """Two inferences: astronaut (ISNet cuts her out cleanly), a brick-textured horse on gravel (it fails)."""
    remover, _ = models
    clean = score(remover.mask(PHOTOS["astronaut"].make(None), "isnet-general-use"))
    hard = score(remover.mask(PHOTOS["horse-on-gravel"].make(None), "isnet-general-use"))
    assert clean >= THRESHOLD > hard, (clean, hard)
