"""Outputs, shapes and matting are bounded (issue 22 finding 2).

What the options alone decide is refused at enqueue, ``400 invalid_options``
naming the option; what depends on the photo fails its job with
``image_too_large`` before the large image is made; ``alpha_matting`` works
on at most ``max_matting_pixels`` whatever the photo's size.
"""

import io

import numpy as np
import pytest
from PIL import Image

from imgproc.errors import PermanentError
from imgproc.processing import matting
from imgproc.processing.operations import Tools, process_image
from tests.test_pipeline import BULK_FACE, FACE, LIGHT, poll

URL = "https://example.com/a.jpg"


@pytest.mark.parametrize(
    "path, options, named",
    [
        (FACE, {"aspect": "60:1", "face_height": 0.05}, "aspect"),  # 115200x1920 before
        (FACE, {"aspect": "1:10.5"}, "aspect"),
        (FACE, {"size": [10000, 10000], "remove_background": True}, "size"),  # +2.3 GiB, 18 s before
        (FACE, {"size": [10000, 100]}, "size"),  # the shape of 100:1
        (FACE, {"preset": "avatar", "size": [6000, 5000]}, "size"),  # 30 MP
        (LIGHT, {"resize": [10000, 10000]}, "resize"),  # 100 MP of a 4x4 PNG before
    ],
)
def test_options_that_alone_ask_too_large_an_output_are_refused_naming_them(
    client, vendor_key, path, options, named
):
    acme = vendor_key("acme")
    body = {"record_id": "r", "image_url": URL, "options": options}
    response = client.post(path, json=body, headers=acme)
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "invalid_options" and error["details"]["option"] == named, error
    print(error["message"])


def test_the_bounds_themselves_are_allowed(client, vendor_key):
    acme = vendor_key("acme")
    for path, options in (
        (FACE, {"aspect": "10:1"}),
        (FACE, {"aspect": "1:10", "size": [500, 5000]}),
        (FACE, {"size": [5000, 5000], "remove_background": True}),
        (LIGHT, {"resize": [5000, 5000]}),
        (LIGHT, {"resize": [10000, 2500], "fit": "cover"}),
    ):
        body = {"record_id": "r", "image_url": URL, "options": options}
        assert client.post(path, json=body, headers=acme).status_code == 202, options
    bulk = {"items": [{"record_id": "a", "image_url": URL}, {"record_id": "b", "image_url": URL}]}
    bulk["items"][1]["options"] = {"aspect": "11:1"}
    refused = client.post(BULK_FACE, json=bulk, headers=acme).json["error"]
    assert refused["details"] == {"option": "aspect", "item": 1}


def test_a_face_crop_whose_frame_is_too_large_fails_image_too_large(
    client, vendor_key, photo_server, photos, work, runtime, settings
):
    """On a 512x512 photo, aspect 10:1 and face_height 0.05 frame the face in ~37 MP, mostly padding."""
    acme = vendor_key("acme")
    photo_server.serve("/astronaut.jpg", photos["astronaut"])
    body = {
        "record_id": "wide",
        "image_url": photo_server.url("/astronaut.jpg"),
        "options": {"aspect": "10:1", "face_height": 0.05, "size": [1000, 100]},
    }
    response = client.post(FACE, json=body, headers=acme)
    assert response.status_code == 202, response.json
    work()
    job = poll(client, acme, response.json["job_id"])
    assert job["state"] == "failed" and job["error"]["code"] == "image_too_large", job
    assert job["attempts"] == 1  # permanent: not retried
    tools = runtime.tools  # the worker's bounds are the settings'
    assert (tools.max_output_pixels, tools.max_matting_pixels) == (25_000_000, settings.max_matting_pixels)
    print(job["error"]["message"])


def test_a_job_queued_before_the_bound_fails_image_too_large():
    """The API refuses such a resize now; one an older API queued is refused by the worker."""
    tiny = Image.new("RGB", (4, 4), "red")
    buf = io.BytesIO()
    tiny.save(buf, "PNG")
    opts = {
        "resize": [10000, 10000],
        "fit": "contain",
        "format": "png",
        "quality": 85,
        "strip_metadata": True,
    }
    tools = Tools(max_pixels=50_000_000, max_output_pixels=25_000_000)
    with pytest.raises(PermanentError) as failed:
        process_image(buf.getvalue(), opts, tools)
    assert failed.value.code == "image_too_large", failed.value
    assert process_image(buf.getvalue(), {**opts, "resize": [5000, 5000]}, tools).width == 5000


def test_alpha_matting_works_on_at_most_its_pixels(settings, monkeypatch):
    """A photo over the bound is matted shrunk; its alpha comes back at full size, close to a full matte."""
    from skimage import data

    rgb = data.astronaut()
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[100:480, 120:400] = 255  # a rough subject: matting refines its edge
    pm = matting.load_pymatting(settings.matting_cache_dir)
    seen = []
    estimate = pm.estimate_alpha_cf
    monkeypatch.setattr(
        pm, "estimate_alpha_cf", lambda image, *a, **k: seen.append(image.shape) or estimate(image, *a, **k)
    )
    full_fg, full = matting.alpha_matte(rgb, mask, settings.matting_cache_dir)
    fg, alpha = matting.alpha_matte(rgb, mask, settings.matting_cache_dir, max_pixels=128 * 128)
    assert seen == [(512, 512, 3), (128, 128, 3)]
    assert alpha.shape == mask.shape and fg.shape == rgb.shape
    iou = ((alpha >= 128) & (full >= 128)).sum() / ((alpha >= 128) | (full >= 128)).sum()
    print(f"IoU {iou:.4f}, mean |alpha diff| {np.abs(alpha.astype(int) - full).mean():.2f}")
    assert iou > 0.98
    # where the alpha is whole (0 or 255), the photo's own pixels are kept
    solid = (alpha == 0) | (alpha == 255)
    assert np.array_equal(fg[solid], rgb[solid])


def test_a_subject_too_thin_for_the_trimap_keeps_its_mask(settings):
    """Eroded away, it left pymatting no sure foreground: ValueError, and the job failed internal."""
    rgb = np.full((64, 64, 3), 200, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[30:34, 10:50] = 255  # 4 pixels high: nothing survives a 10x10 erosion
    fg, alpha = matting.alpha_matte(rgb, mask, settings.matting_cache_dir)
    assert np.array_equal(alpha, mask) and np.array_equal(fg, rgb)
