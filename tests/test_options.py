"""Options of API.md: defaults, ranges, and errors that name the option."""

import pytest

from imgproc.api.options import validate
from imgproc.config import Settings
from imgproc.errors import InvalidOptions

S = Settings()


def test_defaults_are_filled_in():
    assert validate("crop-face", {}, S) == {
        "aspect": "3:4",
        "size": None,
        "face_height": 0.5,
        "face_center_y": 0.42,
        "remove_background": False,
        "bgcolor": "#ffffff",
        "format": "jpg",
        "select": "largest",
        "upscale": True,
        "preset": None,
        "max_kb": None,
        "sheet": False,
    }
    assert validate("remove-bg", None, S)["model"] == "isnet-general-use"


@pytest.mark.parametrize(
    "job_type, options, named",
    [
        ("remove-bg", {"colour": "#fff"}, "colour"),
        ("remove-bg", {"model": "u2net"}, "model"),  # not loaded by the workers
        ("remove-bg", {"format": "gif"}, "format"),
        ("remove-bg", {"format": "jpg"}, "bgcolor"),
        ("remove-bg", {"max_size": 0}, "max_size"),
        ("crop-face", {"size": [300]}, "size"),
        ("crop-face", {"aspect": "wide"}, "aspect"),
        ("crop-face", {"face_height": 1.5}, "face_height"),
        ("crop-face", {"aspect": "1:1", "size": [300, 400]}, "size"),
        ("process-image", {"quality": 101}, "quality"),
        ("process-image", {"strip_metadata": "yes"}, "strip_metadata"),
    ],
)
def test_bad_options_name_the_option(job_type, options, named):
    with pytest.raises(InvalidOptions) as exc:
        validate(job_type, options, S)
    assert exc.value.option == named and named in exc.value.message


def test_size_decides_the_aspect():
    assert validate("crop-face", {"size": [300, 400]}, S)["aspect"] == "300:400"


@pytest.mark.parametrize(
    "options, named",
    [
        ({"crop": "yes"}, "crop"),
        ({"crop": True, "crop_margin": "1px 2px 3px"}, "crop_margin"),  # three values: not CSS
        ({"crop": True, "crop_margin": "-5px"}, "crop_margin"),
        ({"crop": True, "crop_margin": "150%"}, "crop_margin"),
        ({"crop_margin": "5px"}, "crop_margin"),  # a margin around nothing cropped
        ({"canvas": [0, 100]}, "canvas"),
        ({"canvas": [10_000, 10_000]}, "canvas"),  # over the output pixels
        ({"scale": "0%"}, "scale"),
        ({"scale": "120%"}, "scale"),
        ({"scale": "big"}, "scale"),
        ({"position": "left"}, "position"),
        ({"position": "50%"}, "position"),
        ({"bg_image_url": "file:///etc/passwd"}, "bg_image_url"),
        ({"bg_image_url": "javascript:alert(1)"}, "bg_image_url"),
        ({"bg_blur": 0}, "bg_blur"),
        ({"shadow": 1}, "shadow"),
        ({"keep_alpha": "always"}, "keep_alpha"),
        ({"channels": "rgb"}, "channels"),
        ({"preset": "amazon"}, "preset"),
        ({"preset": "us-passport"}, "preset"),  # an ID-photo preset is a face crop's
    ],
)
def test_bad_cutout_options_name_the_option(options, named):
    with pytest.raises(InvalidOptions) as caught:
        validate("remove-bg", options, S)
    assert caught.value.details["option"] == named


@pytest.mark.parametrize(
    "options, both",
    [
        ({"channels": "alpha", "bgcolor": "#ffffff"}, ["channels", "bgcolor"]),
        ({"channels": "alpha", "shadow": True}, ["channels", "shadow"]),
        ({"channels": "alpha", "format": "jpg"}, ["format", "channels"]),
        ({"bg_image_url": "https://x.example/a.jpg", "bg_blur": 8}, ["bg_image_url", "bg_blur"]),
        ({"bgcolor": "#ffffff", "bg_image_url": "https://x.example/a.jpg"}, ["bgcolor", "bg_image_url"]),
        ({"format": "zip", "bg_blur": 8}, ["format", "bg_blur"]),
    ],
)
def test_contradicting_cutout_options_are_refused_naming_both(options, both):
    with pytest.raises(InvalidOptions) as caught:
        validate("remove-bg", options, S)
    assert caught.value.details["options"] == both
    assert "cannot be used together" in str(caught.value)


def test_cutout_options_are_normalised():
    got = validate(
        "remove-bg", {"crop": True, "crop_margin": "5% 10", "scale": "85%", "position": "0% 100%"}, S
    )
    assert got["crop_margin"] == "5% 10px 5% 10px"
    assert got["scale"] == 0.85
    assert got["position"] == "0% 100%"


def test_a_marketplace_preset_sets_the_layout_and_the_jobs_own_options_win():
    got = validate("remove-bg", {"preset": "amazon-main"}, S)
    assert (got["crop"], got["canvas"], got["bgcolor"], got["format"]) == (
        True,
        [2000, 2000],
        "#ffffff",
        "jpg",
    )
    mine = validate("remove-bg", {"preset": "amazon-main", "canvas": [1600, 1600], "format": "png"}, S)
    assert mine["canvas"] == [1600, 1600] and mine["format"] == "png"
    # A background of the job's own replaces the preset's colour rather than contradicting it.
    blurred = validate("remove-bg", {"preset": "amazon-main", "bg_blur": 10}, S)
    assert blurred["bgcolor"] is None and blurred["bg_blur"] == 10
    mask = validate("remove-bg", {"preset": "amazon-main", "channels": "alpha"}, S)
    assert mask["format"] == "png" and mask["bgcolor"] is None
