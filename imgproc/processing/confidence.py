"""How sure a background-removal mask is, read from the mask alone (no second model run).

    score(mask)   0-1, rounded to 3 digits: under the review threshold a person should look at the cut-out
    parts(mask)   the shares the score is made of, for the bench's table and for debugging

The mask is shrunk to at most ``SIDE`` px on its longest side first (``cv2.INTER_AREA``), so a
50 MP mask costs what a 0.2 MP one does (a few ms for the resize). Every part is a share of the
subject, so it does not depend on the photo's size: ISNet's mask is made at 1024 x 1024 and
resized to the photo, its soft edge grows with the photo.

    area     share of the frame at least half opaque
    unsure   share of the subject (alpha >= 10%) that is neither clearly in nor clearly out
             (10% <= alpha < 90%): ISNet's answer where it does not know (glass, fur, a texture)
    islands  share of the foreground in 8-connected pieces under a quarter of the largest: specks
             of background kept, or the subject broken up (pieces of comparable size, a pair of
             shoes, are all subject)
    holes    share of the filled subject that is background enclosed by it: a subject eaten away
    edges    the least covered of the four edges of the frame, its share in the foreground: a
             subject that touches every edge is no subject (a texture, the whole frame kept)

    score = present(area) * (1 - unsure) * (1 - islands) * (1 - holes) * (1 - edges)

A product: each part is a different way for the cut-out to be wrong, one of them at 100% is
enough to make it worthless (a full-frame mask, a mask all grey), and a clean mask keeps every
factor near 1 (its soft edge is a few % of its area). ``present`` is 0 for an empty or nearly
empty mask (under ``EMPTY`` of the frame) and rises to 1 at ``PRESENT``: nothing was found.
The weights are all 1: ``python -m bench.confidence`` (docs/confidence.md) measured the parts
on 29 photos, and these plain factors already put every failure that shows in its mask under
every good mask; weights fitted to 29 photos would be fitted to those photos. What the mask
cannot show, it cannot score: a glass ISNet left out whole, beside a cup it cut cleanly,
scores as the clean cup.
"""

from __future__ import annotations

import numpy as np

#: The longest side the mask is measured at: larger masks are shrunk to it first.
SIDE = 512
#: Alpha of "clearly out" (10%) and of "clearly in" (90%), 0-255.
LOW, HIGH = 26, 230
#: A piece of the foreground at least this share of the largest piece is subject, not an island.
MAJOR = 0.25
#: Foreground share of the frame under which the mask counts as empty (score 0) ...
EMPTY = 0.005
#: ... and from which it counts as fully present (a small subject, far away, is not a doubt).
PRESENT = 0.02


def _small(mask: np.ndarray) -> np.ndarray:
    """``mask`` at most ``SIDE`` px on its longest side (area-averaged: a soft edge stays soft)."""
    import cv2

    height, width = mask.shape[:2]
    k = -(-max(height, width) // SIDE)
    if k == 1:
        return mask
    # A whole factor k over whole k x k blocks is OpenCV's fast path for INTER_AREA: 2 ms at
    # 12 MP where 4000 -> 512 took 15 ms. The last k - 1 rows or columns at most are left out.
    if height >= k and width >= k:
        mask = mask[: height - height % k, : width - width % k]
    size = (max(1, mask.shape[1] // k), max(1, mask.shape[0] // k))
    return cv2.resize(mask, size, interpolation=cv2.INTER_AREA)


def _enclosed(background: np.ndarray) -> int:
    """Background pixels that cannot reach the frame's edge (4-connected): holes in the subject."""
    import cv2

    # A 1-px ring of background joins every piece of background that touches the edge into one.
    ringed = cv2.copyMakeBorder(background, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    _, labels = cv2.connectedComponents(ringed, connectivity=4)
    return int(np.count_nonzero(ringed & (labels != labels[0, 0])))


def parts(mask: np.ndarray) -> dict[str, float]:
    """The shares the score is made of (``area``, ``unsure``, ``islands``, ``holes``, ``edges``), 0-1."""
    import cv2

    if mask.ndim != 2 or mask.dtype != np.uint8 or mask.size == 0:
        raise ValueError(f"a mask is a non-empty uint8 height x width array, not {mask.dtype} {mask.shape}")
    alpha = _small(mask)
    fg = (alpha >= 128).astype(np.uint8)
    n_fg = int(np.count_nonzero(fg))
    some = int(np.count_nonzero(alpha >= LOW))
    unsure = np.count_nonzero((alpha >= LOW) & (alpha < HIGH)) / some if some else 0.0
    _, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    # Pieces of at least MAJOR of the largest are subject too (a pair of shoes, a set); smaller ones
    # are specks of background kept or the subject broken up.
    islands = sizes[sizes < MAJOR * sizes.max()].sum() / n_fg if n_fg else 0.0
    holes = _enclosed(1 - fg)
    edges = min(fg[0].mean(), fg[-1].mean(), fg[:, 0].mean(), fg[:, -1].mean())
    return {
        "area": n_fg / fg.size,
        "unsure": float(unsure),
        "islands": float(islands),
        "holes": holes / (n_fg + holes) if n_fg else 0.0,
        "edges": float(edges),
    }


def score(mask: np.ndarray) -> float:
    """How sure the mask (uint8, height x width, 0-255) is that it cut a subject out, 0-1 (3 digits)."""
    p = parts(mask)
    present = min(1.0, max(0.0, (p["area"] - EMPTY) / (PRESENT - EMPTY)))
    doubts = (1 - p["unsure"]) * (1 - p["islands"]) * (1 - p["holes"]) * (1 - p["edges"])
    return round(present * doubts, 3)
