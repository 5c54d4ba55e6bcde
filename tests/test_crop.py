"""Face-crop geometry, on boxes: no model needed."""

import pytest
from PIL import Image

from imgproc.processing.crop import Face, crop_box, cut, select_face


def test_crop_puts_the_face_where_the_options_say():
    left, top, width, height = crop_box((100, 100, 50, 60), aspect=3 / 4, face_height=0.5, face_center_y=0.42)
    assert height == 120 and width == 90
    assert left + width / 2 == pytest.approx(125, abs=1)  # face centred horizontally
    assert (130 - top) / height == pytest.approx(0.42, abs=0.01)


def test_cut_pads_past_the_edge_with_the_fill_colour():
    img = Image.new("RGB", (100, 100), (255, 0, 0))
    out = cut(img, (-20, -10, 60, 60), (0, 0, 255))
    assert out.size == (60, 60)
    assert out.getpixel((5, 5)) == (0, 0, 255)
    assert out.getpixel((40, 40)) == (255, 0, 0)


def test_select_largest_or_most_confident():
    small_sure = Face((0, 0, 10, 10), 0.99)
    big_unsure = Face((0, 0, 50, 50), 0.6)
    assert select_face([small_sure, big_unsure], "largest") is big_unsure
    assert select_face([small_sure, big_unsure], "most_confident") is small_sure
