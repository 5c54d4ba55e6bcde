"""ID-photo presets as the API shows them: the listing, the options a preset sets, and one job end to end."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from imgproc.api.options import validate
from imgproc.config import Settings
from imgproc.errors import InvalidOptions
from imgproc.presets import MARKETPLACES, PRESETS
from imgproc.processing import imaging
from imgproc.processing.idphoto import place

FACE = "/api/image-queue/crop-face-queue"


def test_presets_are_listed_with_their_sizes_and_ranges(client, vendor_key):
    acme = vendor_key("acme")
    assert client.get("/api/image-queue/presets").status_code == 401
    listed = {p["name"]: p for p in client.get("/api/image-queue/presets", headers=acme).json["presets"]}
    assert {"us-passport", "icao-35x45", "china-id", "avatar"} <= set(listed)
    assert listed["us-passport"]["pixels"] == [600, 600] and listed["us-passport"]["dpi"] == 300
    assert listed["icao-35x45"]["pixels"] == [413, 531] and listed["icao-35x45"]["mm"] == [35, 45]
    assert listed["china-id"]["pixels"] == [358, 441] and listed["china-id"]["file_kb"] == [14, 20]
    assert listed["us-passport"]["head_height"] == [0.50, 0.69]
    assert listed["us-passport"]["eye_line_from_bottom"] == [0.56, 0.69]
    for preset in listed.values():
        assert preset["format"] == "jpg" and preset["bgcolor"].startswith("#")
    # The ID presets crop faces; the marketplace ones (API.md "Marketplace presets") remove backgrounds.
    assert {listed[name]["job_type"] for name in PRESETS} == {"crop-face"}
    assert {listed[name]["job_type"] for name in MARKETPLACES} == {"remove-bg"}
    amazon = listed["amazon-main"]
    assert amazon["pixels"] == [2000, 2000] and amazon["min_fill"] == 0.85
    assert (amazon["min_side"], amazon["recommended_side"], amazon["max_side"]) == (1000, 1600, 10_000)
    assert listed["walmart-main"]["aspect"] == [1, 1] and listed["walmart-main"]["max_file_mb"] == 5
    assert listed["zalando-packshot"]["pixels"] == [1801, 2600]
    for name in MARKETPLACES:
        assert listed[name]["source"] and listed[name]["format"] in listed[name]["formats"]


def test_a_preset_sets_the_options_and_given_ones_win():
    settings = Settings()
    opts = validate("crop-face", {"preset": "icao-35x45"}, settings)
    assert opts["size"] == [413, 531] and opts["remove_background"] and opts["bgcolor"] == "#f0f0f0"
    assert opts["face_height"] is None and opts["face_center_y"] is None  # the preset's head geometry
    given = validate("crop-face", {"preset": "icao-35x45", "bgcolor": "#ffffff", "aspect": "1:1"}, settings)
    assert given["bgcolor"] == "#ffffff" and given["size"] == [531, 531]
    with pytest.raises(InvalidOptions) as caught:
        validate("crop-face", {"preset": "mars-visa"}, settings)
    assert caught.value.option == "preset"
    with pytest.raises(InvalidOptions):
        validate("crop-face", {"upscale": "no"}, settings)


def test_placement_puts_head_and_eyes_mid_range_when_the_margin_allows():
    preset = PRESETS["us-passport"]
    # A head of 160 px, eyes 80 px below the crown: the middles of both ranges leave a 6% top margin.
    head, eye_line, height = place(preset, crown=100.0, chin=260.0, eye=180.0)
    assert head == pytest.approx(sum(preset.head) / 2) and eye_line == pytest.approx(sum(preset.eye_line) / 2)
    assert height == pytest.approx(160 / head)
    # Tall hair (crown 130 px above the eyes): the eye line moves down to keep the top margin.
    head, eye_line, height = place(PRESETS["icao-35x45"], crown=50.0, chin=260.0, eye=180.0)
    top = 180.0 - (1 - eye_line) * height
    assert PRESETS["icao-35x45"].top_margin[0] <= (50.0 - top) / height


def test_dpi_is_written_into_png_and_jpeg():
    rgb = np.full((20, 30, 3), 200, np.uint8)
    png = imaging.encode(rgb, "png", dpi=300)
    assert tuple(round(v) for v in Image.open(io.BytesIO(png)).info["dpi"]) == (300, 300)
    start = png.index(b"pHYs")
    ppm_x, ppm_y, unit = struct.unpack(">IIB", png[start + 4 : start + 13])
    assert (ppm_x, ppm_y, unit) == (11811, 11811, 1)
    assert zlib.crc32(png[start : start + 13]) == struct.unpack(">I", png[start + 13 : start + 17])[0]
    jpg = imaging.encode(rgb, "jpg", dpi=350)
    assert Image.open(io.BytesIO(jpg)).info["dpi"] == (350, 350)


def test_jpeg_quality_search_gives_the_largest_file_that_fits():
    rng = np.random.default_rng(1)
    rgb = (rng.normal(128, 40, (441, 358, 3)).clip(0, 255)).astype(np.uint8)
    data, quality = imaging.encode_jpeg_within(rgb, (14 * 1024, 20_000), dpi=350)
    assert len(data) <= 20_000 and 1 <= quality < 100
    assert len(imaging.encode(rgb, "jpg", quality=quality + 1, dpi=350)) > 20_000


def test_an_id_photo_job_end_to_end(client, vendor_key, photo_server, photos, work):
    """API -> queue -> worker -> result: the compliance report, dpi and exact pixels of the preset."""
    acme = vendor_key("acme")
    photo_server.serve("/astronaut.jpg", photos["astronaut"])
    body = {
        "record_id": "astro-id",
        "image_url": photo_server.url("/astronaut.jpg"),
        "options": {"preset": "china-id"},
    }
    response = client.post(FACE, json=body, headers=acme)
    assert response.status_code == 202, response.json
    work()
    job = client.get(response.json["status_url"], headers=acme).json
    assert job["state"] == "finished", job
    result = job["result"]
    assert (result["width"], result["height"]) == (358, 441) and result["dpi"] == 350
    assert 14 * 1024 <= result["bytes"] <= 20_000
    compliance = result["compliance"]
    assert compliance["preset"] == "china-id" and compliance["compliant"], compliance
    assert {c["name"] for c in compliance["checks"]} >= {
        "faces",
        "roll_degrees",
        "head_height_ratio",
        "eye_line_from_bottom",
        "head_centre_offset",
        "background_uniformity",
        "file_kb",
    }
    assert (
        len(compliance["eyes"]) == 2
        and compliance["crown"][1] < compliance["eyes"][0][1] < compliance["chin"][1]
    )


def test_a_sheet_holds_copies_at_their_size_and_needs_a_preset_that_fits():
    from imgproc.processing.sheet import tile

    photo = np.full((531, 413, 3), 90, np.uint8)
    page, copies = tile(photo, (35.0, 45.0))
    assert page.shape == (1200, 1800, 3) and copies == 8  # 4 x 2 copies of 413x531 px at 300 dpi
    assert tile(np.zeros((441, 358, 3), np.uint8), (26.0, 32.0))[1] == 15
    settings = Settings()
    assert validate("crop-face", {"preset": "us-passport", "sheet": True}, settings)["sheet"]
    for options in ({"sheet": True}, {"preset": "avatar", "sheet": True}):
        with pytest.raises(InvalidOptions) as caught:
            validate("crop-face", options, settings)
        assert caught.value.option == "sheet"
