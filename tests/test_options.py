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
