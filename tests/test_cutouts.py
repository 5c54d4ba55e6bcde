"""Background removal to a spec, through the operation: layout, outputs, backgrounds, kept alpha, reports.

The model here is a fake with a known mask, so that geometry and outputs are
exact; tests/test_cutout_pipeline.py runs the real ISNet through the worker.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from imgproc.adapters.fetch import Fetcher
from imgproc.config import Settings
from imgproc.errors import PermanentError
from imgproc.processing import cutouts, layout
from imgproc.processing.operations import Tools, remove_background
from tests.test_cutout_layout import options

#: The fake model's subject, in a 400x300 photo: x, y, w, h.
BOX = (120, 60, 100, 160)


class BoxMatting:
    """A model whose mask is ``BOX``, with a soft 4 px edge; it counts its runs."""

    def __init__(self):
        self.runs = 0

    def mask(self, rgb: np.ndarray, model: str) -> np.ndarray:
        self.runs += 1
        import cv2

        mask = np.zeros(rgb.shape[:2], np.float32)
        x, y, w, h = BOX
        mask[y : y + h, x : x + w] = 1.0
        soft = cv2.GaussianBlur(mask, (0, 0), 1.2) * mask  # soft inside the box, nothing outside it
        soft[y + 3 : y + h - 3, x + 3 : x + w - 3] = 1.0
        return (soft * 255).round().astype(np.uint8)


def photo(size=(400, 300), fmt="JPEG") -> bytes:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), np.uint8)
    x, y, w, h = BOX
    pixels[y : y + h, x : x + w] = (200, 40, 40)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def run(remover=None, fetch=None, **given):
    tools = Tools(max_pixels=50_000_000, remover=remover or BoxMatting(), fetch=fetch)
    return remove_background(photo(), options(**given), tools)


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_crop_canvas_scale_in_one_job():
    out = run(crop=True, canvas=[500, 500], scale="80%")
    rgba = decoded(out.data)
    assert (out.width, out.height) == (500, 500) and rgba.shape == (500, 500, 4)
    # 160 high -> 400 (80% of 500), 250 wide, centred.
    assert out.extra["subject_box"] == [125, 50, 250, 400]
    assert layout.subject_bounds(rgba[..., 3]) == (125, 50, 250, 400)
    assert out.extra["model"] == "isnet-general-use"
    assert 0 <= out.extra["confidence"] <= 1 and isinstance(out.extra["review"], bool)


def test_mask_only_is_a_greyscale_png_equal_to_the_rgba_alpha():
    rgba = decoded(run(crop=True, crop_margin="10px").data)
    mask = Image.open(io.BytesIO(run(crop=True, crop_margin="10px", channels="alpha").data))
    assert mask.mode == "L" and mask.format == "PNG"
    assert np.array_equal(np.asarray(mask), rgba[..., 3])


def unzip(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        color = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
        assert color.format == "JPEG" and color.mode == "RGB"
        assert alpha.format == "PNG" and alpha.mode == "L"
        return np.asarray(color), np.asarray(alpha)


def test_zip_recombines_into_the_rgba_result():
    rgba = decoded(run(crop=True, shadow=True).data)
    out = run(crop=True, shadow=True, format="zip")
    assert out.format == "zip" and out.content_type == "application/zip"
    color, alpha = unzip(out.data)
    again = cutouts.recombine(color, alpha)
    assert np.array_equal(again[..., 3], rgba[..., 3])  # the alpha is exact
    seen = rgba[..., 3] > 0
    error = np.abs(again[..., :3].astype(int) - rgba[..., :3].astype(int))[seen]
    assert error.mean() <= 1.0  # the colours within a JPEG's error (quality 95, full chroma)
    assert (color[~seen] >= 250).all()  # nothing there: white


def test_zip_colour_is_bgcolor_where_nothing_is():
    color, alpha = unzip(run(format="zip", bgcolor="#0000ff").data)
    assert (alpha[:40] == 0).all()
    far = color[:40].astype(int)  # away from the subject's edge, where JPEG rings
    assert np.abs(far - (0, 0, 255)).max() <= 4


def test_a_background_colour_is_exact_outside_the_subject():
    out = run(crop=True, crop_margin="20px", bgcolor="#ffffff", format="png")
    rgb = decoded(out.data)
    assert rgb.shape[2] == 3
    assert (rgb[:15] == 255).all()


def test_background_photo_covers_the_canvas_and_comes_through_the_fetcher():
    asked = []
    red = io.BytesIO()
    Image.new("RGB", (50, 20), (0, 90, 0)).save(red, "PNG")

    def fetch(url):
        asked.append(url)
        return red.getvalue()

    out = run(fetch=fetch, crop=True, canvas=[300, 300], bg_image_url="https://photos.example/bg.png")
    rgb = decoded(out.data)
    assert asked == ["https://photos.example/bg.png"]
    assert rgb.shape == (300, 300, 3)
    assert tuple(rgb[2, 2]) == (0, 90, 0) and tuple(rgb[297, 297]) == (0, 90, 0)


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.1.2.3"])
def test_background_photo_at_a_private_address_is_fetch_forbidden(address):
    fetcher = Fetcher(Settings())
    with pytest.raises(PermanentError) as caught:
        run(fetch=fetcher.fetch, bg_image_url=f"http://{address}/bg.jpg", bgcolor=None)
    assert caught.value.code == "fetch_forbidden"


def test_blurred_background_is_opaque_and_soft():
    out = run(crop=True, crop_margin="30%", bg_blur=12)
    rgb = decoded(out.data)
    assert rgb.shape[2] == 3
    # The photo's noise, blurred: far less contrast between neighbours than the photo had.
    corner = rgb[:20, :20].astype(int)
    assert np.abs(np.diff(corner, axis=1)).mean() < 10


def test_a_photo_with_its_own_transparency_is_not_cut_again():
    pixels = np.zeros((100, 100, 4), np.uint8)
    pixels[20:60, 30:70] = (10, 200, 10, 255)
    data = io.BytesIO()
    Image.fromarray(pixels).save(data, "PNG")
    model = BoxMatting()
    tools = Tools(max_pixels=50_000_000, remover=model)
    out = remove_background(data.getvalue(), options(keep_alpha="auto", crop=True), tools)
    assert model.runs == 0
    assert out.extra["alpha_source"] == "photo" and "model" not in out.extra
    assert out.extra["subject_box"] == [0, 0, 40, 40]
    # "never" cuts it again.
    remove_background(data.getvalue(), options(crop=True), tools)
    assert model.runs == 1


def test_shadow_darkens_below_the_subject_only():
    plain = decoded(run(crop=True, crop_margin="0px 0px 40px 0px", bgcolor="#ffffff").data)
    shaded = decoded(run(crop=True, crop_margin="0px 0px 40px 0px", bgcolor="#ffffff", shadow=True).data)
    below = slice(BOX[3] + 2, BOX[3] + 6)
    assert shaded[below].mean() < plain[below].mean() - 5
    assert np.array_equal(shaded[10:100, 10:90], plain[10:100, 10:90])  # the subject itself is unchanged


def test_one_model_run_whatever_the_options():
    model = BoxMatting()
    run(
        remover=model, crop=True, canvas=[300, 200], scale="90%", shadow=True, bgcolor="#ffffff", format="jpg"
    )
    assert model.runs == 1


def test_a_preset_judges_a_zip_by_its_color_jpg():
    out = run(preset="amazon-main", format="zip")
    report = out.extra["compliance"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["background_white"]["pass"], checks["background_white"]
    assert out.format == "zip"
