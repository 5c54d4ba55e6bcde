"""Cut-outs to a spec: the layout's geometry on synthetic subjects of a known box, and the edge's colours."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imgproc.config import Settings
from imgproc.jobtypes import JOB_TYPES
from imgproc.processing import layout

SETTINGS = Settings()


def options(**given):
    """Validated remove-bg options, as the API hands them to a worker."""
    from imgproc.api.options import validate

    return validate(JOB_TYPES["remove-bg"], given, SETTINGS)


def subject_mask(size=(400, 300), box=(100, 50, 80, 120)) -> np.ndarray:
    """A photo-sized mask (width, height) with a solid rectangle subject at ``box`` (x, y, w, h)."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    x, y, w, h = box
    mask[y : y + h, x : x + w] = 255
    return mask


def measured_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    return layout.subject_bounds(alpha)


def test_without_layout_options_the_photo_keeps_its_frame():
    mask = subject_mask()
    placement = layout.place(mask, options())
    assert placement.identity
    assert placement.canvas == (400, 300)
    assert placement.subject_box == (100, 50, 80, 120)


def test_crop_is_the_subjects_box():
    mask = subject_mask()
    placement = layout.place(mask, options(crop=True))
    assert placement.region == (100, 50, 80, 120)
    assert placement.canvas == (80, 120)
    assert placement.subject_box == (0, 0, 80, 120)
    assert measured_box(layout.resample(mask, placement)) == (0, 0, 80, 120)


@pytest.mark.parametrize(
    "margin, region",
    [
        ("10px", (90, 40, 100, 140)),
        ("10px 20px", (80, 40, 120, 140)),
        ("1px 2px 3px 4px", (96, 49, 86, 124)),  # top, right, bottom, left
        ("10%", (92, 38, 96, 144)),  # 10% of 120 high = 12 above and below, of 80 wide = 8 each side
    ],
)
def test_crop_margin_reads_like_css(margin, region):
    placement = layout.place(subject_mask(), options(crop=True, crop_margin=margin))
    assert placement.region == region
    x, y, _, _ = region
    assert placement.subject_box == (100 - x, 50 - y, 80, 120)


def test_a_margin_past_the_photos_edge_is_transparent():
    mask = subject_mask(box=(0, 0, 50, 50))
    placement = layout.place(mask, options(crop=True, crop_margin="10px"))
    assert placement.region == (-10, -10, 70, 70)
    alpha = layout.resample(mask, placement)
    assert alpha.shape == (70, 70)
    assert measured_box(alpha) == (10, 10, 50, 50)
    assert alpha[:10].max() == 0 and alpha[:, :10].max() == 0


def test_canvas_fits_the_subject_inside_centred():
    placement = layout.place(subject_mask(), options(crop=True, canvas=[600, 600]))
    # 80x120 fitted in 600x600: 5x, 400x600, centred horizontally.
    assert placement.target == (100, 0, 400, 600)
    assert placement.subject_box == (100, 0, 400, 600)
    assert measured_box(layout.resample(subject_mask(), placement)) == (100, 0, 400, 600)


@pytest.mark.parametrize(
    "position, corner",
    [
        ("center", (130, 45)),
        ("top", (130, 0)),
        ("bottom", (130, 90)),
        ("0% 0%", (0, 0)),
        ("100% 50%", (260, 45)),
    ],
)
def test_scale_and_position(position, corner):
    # The subject's longest side is 85% of the canvas' matching side: 120 -> 0.85 * 600 = 510 high, 340 wide.
    mask = subject_mask()
    placement = layout.place(mask, options(scale="85%", canvas=[600, 600], position=position))
    assert placement.target[2:] == (340, 510)
    assert placement.target[:2] == corner
    assert measured_box(layout.resample(mask, placement)) == (*corner, 340, 510)


def test_scale_without_canvas_places_the_subject_in_its_own_box():
    placement = layout.place(subject_mask(), options(scale="50%"))
    assert placement.canvas == (80, 120)
    assert placement.target == (20, 30, 40, 60)


def test_canvas_without_crop_letterboxes_the_photo():
    placement = layout.place(subject_mask(), options(canvas=[200, 200]))
    assert placement.target == (0, 25, 200, 150)
    assert placement.subject_box == (50, 50, 40, 60)


def test_an_empty_mask_has_no_subject_box_and_crop_keeps_the_photo():
    placement = layout.place(np.zeros((30, 40), np.uint8), options(crop=True))
    assert placement.subject_box is None
    assert placement.canvas == (40, 30)


def green_screen(size=240, seed=1):
    """A subject of known alpha (a disc with a soft 12 px edge, orange with texture) pasted on pure green."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    distance = np.hypot(xx - size / 2, yy - size / 2)
    alpha = np.clip((size * 0.35 - distance) / 12 + 0.5, 0, 1)
    rng = np.random.default_rng(seed)
    subject = np.empty((size, size, 3), np.float32)
    subject[...] = (230, 120, 40)
    subject += rng.normal(0, 8, subject.shape)
    green = np.array([0, 255, 0], np.float32)
    photo = subject * alpha[..., None] + green * (1 - alpha[..., None])
    return np.clip(photo, 0, 255).astype(np.uint8), (alpha * 255).round().astype(np.uint8)


def greenness(rgb: np.ndarray, where: np.ndarray) -> float:
    """Mean of green above the larger of red and blue, over ``where``: 0 for no green cast."""
    pixels = rgb[where].astype(np.int32)
    return float(np.clip(pixels[:, 1] - np.maximum(pixels[:, 0], pixels[:, 2]), 0, None).mean())


def test_decontamination_leaves_no_green_on_white():
    photo, alpha = green_screen()
    band = (alpha > 0) & (alpha < 255)
    white = np.full_like(photo, 255)
    before = layout.compose(photo, alpha, white, None)
    after = layout.compose(layout.decontaminate(photo, alpha), alpha, white, None)
    assert greenness(before, band) > 20  # the old background shows through the edge
    assert greenness(after, band) < 1.0
    # Only the band changes.
    assert np.array_equal(layout.decontaminate(photo, alpha)[alpha == 255], photo[alpha == 255])


def test_background_colour_outside_the_subject_is_exact():
    photo, alpha = green_screen()
    white = np.full_like(photo, 255)
    out = layout.compose(layout.decontaminate(photo, alpha), alpha, white, None)
    assert (out[alpha == 0] == 255).all()


def test_shadow_falls_under_the_subject_and_keeps_it_opaque():
    mask = subject_mask(size=(200, 200), box=(50, 40, 100, 100))
    shade = layout.shadow(mask, (50, 40, 100, 100))
    assert shade[142, 100] > 0  # just below the subject
    assert shade[5, 100] == 0  # far above it
    rgba = layout.compose(np.full((200, 200, 3), 200, np.uint8), mask, None, shade)
    assert (rgba[40:140, 50:150, 3] == 255).all()
    assert 0 < rgba[142, 100, 3] < 255 and tuple(rgba[142, 100, :3]) == (0, 0, 0)


def test_cover_fills_the_canvas():
    background = np.zeros((100, 300, 3), np.uint8)
    background[:, 100:200] = 255  # the middle third, white
    out = layout.cover(background, (200, 200))
    assert out.shape == (200, 200, 3)
    assert (out[:, 20:180] == 255).all()  # the middle of the photo fills the square


def test_blurred_background_is_the_photos_own_and_smooth():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 400, 3), np.uint8)
    placement = layout.place(subject_mask(), options(crop=True, canvas=[200, 200]))
    out = layout.blurred(photo, placement, 20)
    assert out.shape == (200, 200, 3)
    assert out.std() < photo.std() / 4
    assert abs(float(out.mean()) - float(photo.mean())) < 10
    assert cv2.Laplacian(out, cv2.CV_32F).std() < 2
