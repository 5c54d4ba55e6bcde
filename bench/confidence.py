"""Does the confidence score (``imgproc.processing.confidence``) put ISNet's failures under its good masks?

``python -m bench.confidence [--masks DIR]`` runs the real ISNet (``BackgroundRemover``, the
worker's loader and model) on 29 photos and prints, as a Markdown table (docs/confidence.md),
each photo's kind, what its mask looks like, its score and the parts of the score. The clean
photos are scikit-image's bundled ones (no download); the hard ones are made here: textures with
no subject, subjects on busy backgrounds, a glass, hair, many small objects, documents, a graphic.
``kind`` says what a photo was made to be; ``mask`` says what ISNet did with it, judged by eye
from the masks ``--masks DIR`` writes (photo and mask side by side): a hard photo that ISNet cuts
out well is marked ``good`` and should score high. Then the time of ``score`` on a 12 MP mask.
Not part of ``make bench``: the figures are docs/confidence.md's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imgproc.config import Settings
from imgproc.processing import confidence

#: What ISNet's mask of a photo looks like, by eye: a good cut-out, one to look at twice, or
#: unusable (wrong, or empty: a photo with no subject gives a cut-out of nothing).
GOOD, DOUBTFUL, FAILS = "good", "doubtful", "fails"
#: The default review threshold (``IMGPROC_REVIEW_THRESHOLD``), which these figures chose: between
#: the lowest good mask and the highest doubtful one (docs/confidence.md).
THRESHOLD = Settings().review_threshold


@dataclass(frozen=True)
class Photo:
    """A photo of the bench: how it is made (``make(mask_of)``), its kind and what ISNet makes of it."""

    kind: str  # clean or hard: what the photo was made to be
    mask: str  # GOOD, DOUBTFUL or FAILS
    note: str
    make: Callable[[Callable[[str], np.ndarray]], np.ndarray]


def _sample(name: str, index: int | None = None) -> np.ndarray:
    """A scikit-image sample as RGB (grey ones converted, ``index`` of a pair)."""
    from skimage import data

    image = getattr(data, name)()
    image = image[index] if index is not None else image
    return (
        cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else np.ascontiguousarray(image[..., :3])
    )


def _tiled(name: str, height: int, width: int) -> np.ndarray:
    texture = _sample(name)
    reps = (height // texture.shape[0] + 1, width // texture.shape[1] + 1, 1)
    return np.tile(texture, reps)[:height, :width]


def _paste(background: np.ndarray, subject, alpha: np.ndarray) -> np.ndarray:
    """``subject`` (an RGB array or one colour) over ``background`` through ``alpha``."""
    a = alpha[..., None].astype(np.float32) / 255
    return (np.asarray(subject, np.float32) * a + background * (1 - a)).astype(np.uint8)


def _horse(side: int = 512) -> np.ndarray:
    """scikit-image's horse silhouette as an alpha (255 the horse), at 80% of a ``side`` square."""
    from skimage import data

    silhouette = (~data.horse()).astype(np.uint8) * 255
    scale = 0.8 * side / max(silhouette.shape)
    silhouette = cv2.resize(silhouette, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    alpha = np.zeros((side, side), np.uint8)
    y, x = (side - silhouette.shape[0]) // 2, (side - silhouette.shape[1]) // 2
    alpha[y : y + silhouette.shape[0], x : x + silhouette.shape[1]] = silhouette
    return cv2.GaussianBlur(alpha, (3, 3), 0)


def _glass(scene: np.ndarray) -> np.ndarray:
    """A wine glass drawn over ``scene``: 18-25% opaque, a brighter rim and one highlight."""
    h, w = scene.shape[:2]
    cx, bowl = w // 2, ((w // 2, int(h * 0.35)), (int(w * 0.16), int(h * 0.2)))
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, *bowl, 0, 0, 360, 0.18, -1)
    cv2.rectangle(alpha, (cx - 6, int(h * 0.55)), (cx + 6, int(h * 0.82)), 0.25, -1)
    cv2.ellipse(alpha, (cx, int(h * 0.84)), (int(w * 0.12), int(h * 0.03)), 0, 0, 360, 0.25, -1)
    cv2.ellipse(alpha, *bowl, 0, 0, 360, 0.6, 3)
    alpha = cv2.GaussianBlur(alpha, (5, 5), 0)[..., None]
    out = scene.astype(np.float32) * (1 - alpha) + 235 * alpha
    cv2.line(out, (cx - int(w * 0.1), int(h * 0.25)), (cx - int(w * 0.08), int(h * 0.42)), (255, 255, 255), 4)
    return np.clip(out, 0, 255).astype(np.uint8)


def _gradient(side: int = 512) -> np.ndarray:
    ramp = np.repeat(np.linspace(120, 220, side, dtype=np.float32)[:, None], side, 1)
    return np.dstack([ramp * 0.8, ramp * 0.9, ramp]).astype(np.uint8)


def _hair(side: int = 512, strands: int = 600, seed: int = 0) -> np.ndarray:
    """A tuft of 1-px curly strands, anti-aliased, on a light gradient."""
    rng = np.random.default_rng(seed)
    image = np.repeat(np.linspace(170, 230, side, dtype=np.uint8)[None, :, None], side, 0).repeat(3, 2)
    for _ in range(strands):
        x, y = side / 2 + rng.normal(0, 20), side * 0.3 + rng.normal(0, 15)
        angle, points = rng.uniform(0, 2 * np.pi), []
        for _ in range(40):
            points.append((x, y))
            angle += rng.normal(0, 0.15)
            x, y = x + 5 * np.cos(angle), y + 5 * np.sin(angle) + 1.5  # strands fall a little
        c = int(rng.integers(30, 90))
        cv2.polylines(image, [np.int32(points)], False, (c, c * 0.8, c * 0.6), 1, cv2.LINE_AA)
    return image


def _cut_onto(subject: str, texture: str | None):
    """A maker: ``subject`` cut out by its own ISNet mask, onto a tiled ``texture`` (None: white)."""

    def make(mask_of):
        rgb = PHOTOS[subject].make(mask_of)
        h, w = rgb.shape[:2]
        background = _tiled(texture, h, w) if texture else np.full((h, w, 3), 255, np.uint8)
        return _paste(background, rgb, mask_of(subject))

    return make


def _sampled(name: str, index: int | None = None):
    return lambda mask_of: _sample(name, index)


def _made(picture: Callable[[], np.ndarray]):
    return lambda mask_of: picture()


def _horse_on(background: Callable[[], np.ndarray], fill):
    return _made(lambda: _paste(background(), fill, _horse()))


def _glass_on(scene: Callable[[], np.ndarray]):
    return _made(lambda: _glass(scene()))


#: The photos: name | kind (clean or hard: what it was made to be) | ISNet's mask by eye | what the mask is.
TABLE = """
astronaut          | clean | good     | the person and her helmet
camera             | clean | good     | the man and the tripod
chelsea            | clean | good     | a close-up cat: fur and whiskers half opaque
coffee             | clean | good     | cup and saucer
coffee-on-white    | clean | good     | coffee cut out, on white
rocket             | clean | doubtful | the rocket, four lattice towers and light flares
motorcycle         | clean | good     | the motorcycle, in a cluttered garage
horse              | clean | good     | a brown horse on light grey
clock              | clean | good     | the clock
retina             | clean | good     | the fundus disc
colorwheel         | clean | good     | the disc (touching all four edges)
grass              | hard  | fails    | texture, no subject: an empty cut-out
gravel             | hard  | fails    | texture, no subject: an empty cut-out
brick              | hard  | fails    | texture: the bricks kept as a grid
horse-on-gravel    | hard  | fails    | brick-textured horse on gravel: grey, in strips
horse-on-grass     | hard  | good     | green horse on grass: cut out cleanly
astronaut-on-brick | hard  | good     | astronaut cut out, on bricks: cut again cleanly
coffee-on-gravel   | hard  | good     | coffee cut out, on gravel: cut again cleanly
glass-on-brick     | hard  | fails    | glass over bricks: the bricks kept, the glass lost
glass-on-coffee    | hard  | fails    | glass over the coffee: the cup kept, the glass lost
glass-on-gradient  | hard  | doubtful | glass alone: its bowl half opaque (rightly)
hair               | hard  | doubtful | a tuft of strands: plausible, strands half opaque
coins              | hard  | doubtful | 24 coins: each cut, some missed
hubble             | hard  | fails    | star field, no subject: an empty cut-out
cells              | hard  | fails    | stained tissue: a faint grey cloud
page               | hard  | fails    | a printed page: the letters, grey
text               | hard  | fails    | handwriting on paper: strokes and lines
moon               | hard  | fails    | the moon's surface: grey all over
logo               | hard  | fails    | a flat graphic: a grey blob
"""
#: How the photos not named for a scikit-image sample are made.
MAKERS = {
    "coffee-on-white": _cut_onto("coffee", None),
    "motorcycle": _sampled("stereo_motorcycle", 0),
    "horse": _horse_on(lambda: np.full((512, 512, 3), 240, np.uint8), (90, 60, 40)),
    "horse-on-gravel": _made(lambda: _paste(_sample("gravel"), _tiled("brick", 512, 512), _horse())),
    "horse-on-grass": _horse_on(lambda: _sample("grass"), (70, 90, 60)),
    "astronaut-on-brick": _cut_onto("astronaut", "brick"),
    "coffee-on-gravel": _cut_onto("coffee", "gravel"),
    "glass-on-brick": _glass_on(lambda: _sample("brick")),
    "glass-on-coffee": _glass_on(lambda: _sample("coffee")),
    "glass-on-gradient": _glass_on(_gradient),
    "hair": _made(_hair),
    "hubble": _sampled("hubble_deep_field"),
    "cells": _sampled("immunohistochemistry"),
}
PHOTOS: dict[str, Photo] = {
    name: Photo(kind, mask, note, MAKERS.get(name) or _sampled(name))
    for name, kind, mask, note in (
        [cell.strip() for cell in row.split("|")] for row in TABLE.strip().splitlines()
    )
}
C, H = "clean", "hard"


def measure(remover, model: str, masks: Path | None = None) -> list[dict]:
    """Each photo's name, kind, mask, note, score and parts, by ``remover``'s ``model``."""
    cache: dict[str, np.ndarray] = {}

    def mask_of(name: str) -> np.ndarray:
        if name not in cache:
            rgb = PHOTOS[name].make(mask_of)
            cache[name] = remover.mask(rgb, model)
            if masks:
                side = cv2.cvtColor(cache[name], cv2.COLOR_GRAY2BGR)
                cv2.imwrite(str(masks / f"{name}.png"), np.hstack([rgb[..., ::-1], side]))
        return cache[name]

    rows = []
    for name, photo in PHOTOS.items():
        mask = mask_of(name)
        parts = confidence.parts(mask)
        rows.append({"photo": name, **vars(photo), "score": confidence.score(mask), **parts})
    return rows


def seconds_at_12mp(mask: np.ndarray, repeat: int = 21) -> tuple[float, float]:
    """Least and median seconds of ``score`` on ``mask`` enlarged to 4000x3000 (as ISNet's upscale does).

    The least is the cost; the median shows what other work on a shared machine added.
    """
    big = cv2.resize(mask, (4000, 3000), interpolation=cv2.INTER_LINEAR)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        confidence.score(big)
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table, best score first."""
    keys = ("area", "unsure", "islands", "holes", "edges")
    lines = [
        "| photo | kind | ISNet's mask | confidence | " + " | ".join(keys) + " |",
        "|---|---|---|--:|" + "--:|" * len(keys),
    ]
    for r in sorted(rows, key=lambda r: -r["score"]):
        figures = " | ".join(f"{r[k]:.3f}" for k in keys)
        lines.append(
            f"| {r['photo']} | {r['kind']} | {r['mask']}: {r['note']} | **{r['score']:.3f}** | {figures} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.confidence", description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", type=Path, help="write each photo beside its mask here, as PNG")
    args = parser.parse_args(argv)
    from imgproc.config import Settings
    from imgproc.processing.models import BackgroundRemover

    settings = Settings()
    remover = BackgroundRemover(settings)
    if args.masks:
        args.masks.mkdir(parents=True, exist_ok=True)
    rows = measure(remover, settings.bg_model, args.masks)
    print(table(rows))
    print()
    for verdict in (GOOD, DOUBTFUL, FAILS):
        scores = [r["score"] for r in rows if r["mask"] == verdict]
        print(f"masks {verdict}: {len(scores)}, scores {min(scores):.3f} to {max(scores):.3f}")
    for kind in (C, H):
        scores = [r["score"] for r in rows if r["kind"] == kind]
        print(f"{kind} photos: {len(scores)}, scores {min(scores):.3f} to {max(scores):.3f}")
    wrong = [
        f"{r['photo']} ({r['mask']}, {r['score']:.3f})"
        for r in rows
        if (r["mask"] == GOOD) != (r["score"] >= THRESHOLD)
    ]
    print(f"on the wrong side of a threshold of {THRESHOLD}: {', '.join(wrong) or 'none'}")
    mask = remover.mask(_sample("astronaut"), settings.bg_model)
    least, median = seconds_at_12mp(mask)
    print(f"score on a 12 MP mask (4000x3000), {cv2.getNumThreads()} OpenCV threads: {least * 1000:.1f} ms")
    print(f"(least of 21 runs; median {median * 1000:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
