"""Cut-outs to a spec on a real photo, through the API, a real worker and the real ISNet (one bulk)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image

from imgproc.processing import cutouts, layout
from tests.test_pipeline import poll, result_image

BULK_BG = "/api/image-queue/bulk-remove-bg"


def stored(settings, job) -> bytes:
    from imgproc.adapters.storage import LocalStorage

    key = job["result"]["url"].split("/media/", 1)[1]
    return LocalStorage(settings.storage_dir).local_path(key).read_bytes()


def test_marketplace_zip_and_mask_on_coffee(client, vendor_key, photo_server, photos, work, settings):
    acme = vendor_key("acme")
    photo_server.serve("/coffee.jpg", photos["coffee"])
    url = photo_server.url("/coffee.jpg")
    items = [
        {"record_id": "amazon", "image_url": url, "options": {"preset": "amazon-main"}},
        {"record_id": "zip", "image_url": url, "options": {"crop": True, "format": "zip"}},
        {"record_id": "mask", "image_url": url, "options": {"crop": True, "channels": "alpha"}},
        # A background at a private address fails like a photo there, before the model runs.
        {"record_id": "bg", "image_url": url, "options": {"bg_image_url": "http://169.254.169.254/bg.jpg"}},
    ]
    # The rest of the options, through the same worker: a layout with a shadow on white, another photo
    # behind, the photo's own blurred, and a photo whose own transparency is kept (no model run).
    transparent = io.BytesIO()
    cut = np.zeros((120, 160, 4), np.uint8)
    cut[20:100, 40:120] = (200, 60, 20, 255)
    Image.fromarray(cut).save(transparent, "PNG")
    photo_server.serve("/cut.png", transparent.getvalue())
    laid = {"crop": True, "crop_margin": "2%", "canvas": [600, 400], "scale": "80%", "position": "0% 100%"}
    items += [
        {"record_id": "laid", "image_url": url, "options": {**laid, "shadow": True, "bgcolor": "#ffffff"}},
        {"record_id": "behind", "image_url": url, "options": {"bg_image_url": url, "format": "jpg"}},
        {"record_id": "blur", "image_url": url, "options": {"bg_blur": 8, "format": "jpg"}},
        {"record_id": "kept", "image_url": photo_server.url("/cut.png"), "options": {"keep_alpha": "auto"}},
    ]
    response = client.post(BULK_BG, headers=acme, json={"items": items})
    assert response.status_code == 202, response.json
    work()
    jobs = [poll(client, acme, job_id) for job_id in response.json["job_ids"]]
    amazon, packed, mask, bg, laid_out, behind, blur, kept = jobs

    assert amazon["state"] == "finished", amazon
    result = amazon["result"]
    assert (result["width"], result["height"], result["format"]) == (2000, 2000, "jpg")
    report = result["compliance"]
    assert report["preset"] == "amazon-main"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["subject_fill"]["pass"] and checks["subject_fill"]["value"] >= 0.85
    assert report["compliant"], report
    x, y, w, h = result["subject_box"]
    assert max(w, h) == 1800  # 90% of 2000, the preset's scale
    assert 0 <= result["confidence"] <= 1 and result["review"] == (
        result["confidence"] < settings.review_threshold
    )
    img = np.asarray(result_image(settings, amazon))
    assert img.shape == (2000, 2000, 3)
    assert (img[:8] == 255).all() and (img[:, :8] == 255).all()  # pure white outside the subject

    assert packed["state"] == "finished", packed
    assert packed["result"]["format"] == "zip" and packed["result"]["url"].endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(stored(settings, packed))) as archive:
        color = np.asarray(Image.open(io.BytesIO(archive.read("color.jpg"))))
        alpha = np.asarray(Image.open(io.BytesIO(archive.read("alpha.png"))))
    rgba = cutouts.recombine(color, alpha)
    assert rgba.shape[:2] == (packed["result"]["height"], packed["result"]["width"])
    assert layout.subject_bounds(alpha)[:2] == (0, 0)  # cropped to the subject

    assert mask["state"] == "finished", mask
    grey = result_image(settings, mask)
    assert grey.mode == "L" and grey.format == "PNG"
    # The same photo and model, the same crop: the mask is the zip's alpha.
    assert np.array_equal(np.asarray(grey), alpha)

    assert bg["state"] == "failed" and bg["error"]["code"] == "fetch_forbidden", bg

    assert laid_out["state"] == "finished", laid_out
    x, y, w, h = laid_out["result"]["subject_box"]
    assert (laid_out["result"]["width"], laid_out["result"]["height"]) == (600, 400)
    assert x <= 18 and y + h >= 382  # bottom left, "0% 100%", inside its 2% margin (3% of 600)
    assert max(w / 600, h / 400) <= 0.8 + 0.01
    for job in (behind, blur):
        assert job["state"] == "finished" and job["result"]["format"] == "jpg", job
        assert result_image(settings, job).mode == "RGB"
    assert kept["state"] == "finished", kept
    assert kept["result"]["alpha_source"] == "photo" and kept["result"]["subject_box"] == [40, 20, 80, 80]
