"""Decoding what vendors really send: odd modes, EXIF rotation, animations, and garbage."""

import io

import numpy as np
import pytest
from PIL import Image

from imgproc.errors import PermanentError
from imgproc.processing import imaging


def encoded(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["CMYK", "L", "1", "P", "LA", "RGBA", "I;16"])
def test_modes_decode_to_rgb_or_rgba(mode):
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    img = imaging.decode(encoded(Image.new(mode, (40, 30)), fmt), max_pixels=10_000)
    assert img.size == (40, 30)
    assert img.mode == ("RGBA" if mode in ("LA", "RGBA") else "RGB")


def test_sixteen_bit_grey_keeps_its_brightness():
    arr = np.full((10, 10), 65535 // 2, dtype=np.uint16)
    img = imaging.decode(encoded(Image.fromarray(arr), "PNG"), max_pixels=1000)
    assert abs(int(np.asarray(img)[0, 0, 0]) - 127) <= 1


def test_palette_with_transparency_keeps_alpha():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    out = imaging.decode(encoded(img, "PNG", transparency=0), max_pixels=1000)
    assert out.mode == "RGBA" and out.getpixel((0, 0))[3] == 0


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = imaging.decode(encoded(img, "JPEG", exif=exif.tobytes()), max_pixels=10_000)
    assert out.size == (20, 60)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = imaging.decode(buf.getvalue(), max_pixels=1000)
    r, g, b = out.convert("RGB").getpixel((5, 5))
    assert r > 200 and b < 50


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, not an image",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"<html><body>hi</body></html>",
    ],
)
def test_garbage_is_unsupported_image(data):
    with pytest.raises(PermanentError) as exc:
        imaging.decode(data, max_pixels=1000)
    assert exc.value.code == "unsupported_image"


def test_truncated_jpeg_is_unsupported_image():
    data = encoded(Image.effect_noise((200, 200), 50).convert("RGB"), "JPEG")
    with pytest.raises(PermanentError) as exc:
        imaging.decode(data[: len(data) // 2], max_pixels=100_000)
    assert exc.value.code == "unsupported_image"


def test_pixel_cap_is_checked_before_decoding():
    with pytest.raises(PermanentError) as exc:
        imaging.decode(encoded(Image.new("L", (300, 300)), "PNG"), max_pixels=300 * 300 - 1)
    assert exc.value.code == "image_too_large"


def test_jpeg_output_flattens_alpha_over_the_colour():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = Image.open(io.BytesIO(imaging.encode(img, "jpg", bgcolor=(0, 0, 255))))
    r, g, b = out.getpixel((1, 1))
    assert out.format == "JPEG" and b > 240 and r < 20


@pytest.mark.parametrize(
    "shape", [(1, 1, 3), (7, 5, 4), (64, 33, 3), (256, 2, 3), (301, 200, 4), (513, 3, 4)]
)
def test_fast_png_encoder_is_lossless(shape):
    import numpy as np

    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(imaging.encode_png(pixels)))
    assert decoded.mode == ("RGBA" if shape[2] == 4 else "RGB")
    assert np.array_equal(np.asarray(decoded), pixels)


def _jpeg_with_orientation(orientation: int, mode: str = "RGB") -> bytes:
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((300, 200)).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_straight_to_an_array_matches_pillow_upright(orientation):
    import numpy as np

    data = _jpeg_with_orientation(orientation)
    fast = imaging.decode_rgb(data, 10**8)
    assert fast.shape == ((300, 200, 3) if orientation >= 5 else (200, 300, 3))
    assert np.array_equal(fast, imaging.rgb_array(imaging.decode(data, 10**8)))


def test_array_decode_refuses_what_decode_refuses():
    data = _jpeg_with_orientation(1)
    with pytest.raises(PermanentError) as info:
        imaging.decode_rgb(data[: len(data) // 2], 10**8)  # truncated: OpenCV alone would fill it in grey
    assert info.value.code == "unsupported_image"
    with pytest.raises(PermanentError) as info:
        imaging.decode_rgb(data, 1000)
    assert info.value.code == "image_too_large"
    grey = imaging.decode_rgb(_jpeg_with_orientation(6, "L"), 10**8)  # through Pillow, as RGB
    assert grey.shape == (300, 200, 3)
