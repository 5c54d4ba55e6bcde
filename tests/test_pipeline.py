"""API → real Redis → a real worker → real models → storage → records, on real photos.

ISNet takes seconds per image on a small CPU, so only a handful of tests run it.
"""

import io

import numpy as np
import pytest
from PIL import Image

BG = "/api/image-queue/remove-bg-queue"
FACE = "/api/image-queue/crop-face-queue"
BULK_FACE = "/api/image-queue/bulk-crop-face"
LIGHT = "/api/image-queue/process-image-queue"


@pytest.fixture
def acme(vendor_key):
    return vendor_key("acme")


def result_image(settings, job) -> Image.Image:
    key = job["result"]["url"].split("/media/", 1)[1]
    from imgproc.adapters.storage import LocalStorage

    path = LocalStorage(settings.storage_dir).local_path(key)
    return Image.open(io.BytesIO(path.read_bytes()))


def submit(client, path, headers, **body):
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 202, response.json
    return response.json["job_id"]


def poll(client, headers, job_id):
    return client.get(f"/api/image-queue/job/{job_id}", headers=headers).json


def test_face_crop_on_astronaut(client, acme, photo_server, photos, work, settings, runtime):
    photo_server.serve("/astronaut.jpg", photos["astronaut"])
    url = photo_server.url("/astronaut.jpg")
    plain = submit(client, FACE, acme, record_id="astro", image_url=url)
    sized = submit(client, FACE, acme, record_id="astro-sized", image_url=url, options={"size": [300, 400]})
    work()

    job = poll(client, acme, plain)
    assert job["state"] == "finished", job
    result = job["result"]
    assert result["faces"] == 1 and result["format"] == "jpg" and result["record_id"] == "astro"
    assert result["width"] / result["height"] == pytest.approx(3 / 4, abs=0.01)
    x, y, w, h = result["face_box"]
    left, top, cw, ch = result["crop_box"]
    assert left <= x and top <= y and x + w <= left + cw and y + h <= top + ch  # the face inside the crop
    assert 170 <= x + w / 2 <= 280 and 80 <= y + h / 2 <= 200  # where astronaut()'s face is
    img = result_image(settings, job)
    assert img.size == (result["width"], result["height"]) and img.format == "JPEG"
    assert result_image(settings, poll(client, acme, sized)).size == (300, 400)
    row = runtime.records.get("acme", "astro")
    # Without IMGPROC_PUBLIC_URL the worker writes the URL relative to the API; the poll's is absolute.
    assert (
        row["face_crop_url"].startswith("/media/")
        and result["url"] == "http://localhost" + row["face_crop_url"]
    )
    assert row["processed"] and row["original_url"] == url
    assert row["writes"] == 1


def test_two_people_largest_face_and_coffee_has_none(client, acme, photo_server, photos, work, settings):
    for name in ("two-people", "coffee"):
        photo_server.serve(f"/{name}.jpg", photos[name])
    response = client.post(
        BULK_FACE,
        headers=acme,
        json={
            "items": [
                {"record_id": name, "image_url": photo_server.url(f"/{name}.jpg")}
                for name in ("two-people", "coffee")
            ]
        },
    )
    assert response.status_code == 202
    two, coffee = response.json["job_ids"]
    work()
    job = poll(client, acme, two)
    assert job["state"] == "finished" and job["result"]["faces"] == 2
    assert job["result"]["face_box"][0] < 512  # the big astronaut on the left, not the small copy
    job = poll(client, acme, coffee)
    assert job["state"] == "failed" and job["attempts"] == 1
    assert job["error"] == {
        "code": "no_face_found",
        "message": "no face was found in the photo",
        "retryable": False,
    }
    assert photo_server.hits["/coffee.jpg"] == 1  # not retried
    batch = client.get(response.json["status_url"], headers=acme).json
    assert batch["counts"]["finished"] == 1 and batch["counts"]["failed"] == 1 and batch["progress"] == 100


def test_transient_failure_is_retried_permanent_is_not(client, acme, photo_server, photos, work):
    photo_server.serve("/flaky.jpg", photos["coffee"])
    photo_server.fail_next("/flaky.jpg", 1, status=500)
    photo_server.serve("/broken.jpg", b"<html>not an image</html>")
    flaky = submit(
        client,
        LIGHT,
        acme,
        record_id="flaky",
        image_url=photo_server.url("/flaky.jpg"),
        options={"resize": [64, 64]},
    )
    broken = submit(client, LIGHT, acme, record_id="broken", image_url=photo_server.url("/broken.jpg"))
    work()
    job = poll(client, acme, flaky)
    assert job["state"] == "finished" and job["attempts"] == 2 and photo_server.hits["/flaky.jpg"] == 2
    assert (job["result"]["width"], job["result"]["height"]) == (64, 43)
    job = poll(client, acme, broken)
    assert job["state"] == "failed" and job["attempts"] == 1 and job["error"]["code"] == "unsupported_image"


def test_worker_loads_its_session_once_for_three_jobs(
    monkeypatch, client, acme, photo_server, settings, redis_conn
):
    """A real worker process start-up path: three background removals, one ONNX Runtime session."""
    import onnxruntime

    from imgproc.jobtypes import QUEUE_BG
    from imgproc.processing import models
    from imgproc.worker import build_worker

    created = []
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: created.append(a) or real(*a, **k))
    img = Image.new("RGB", (64, 64), "white")
    img.paste((200, 30, 30), (16, 16, 48, 48))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    photo_server.serve("/square.png", buf.getvalue())
    ids = [
        submit(
            client,
            BG,
            acme,
            record_id=f"sq{i}",
            image_url=photo_server.url("/square.png"),
            options={"format": "webp"},
        )
        for i in range(3)
    ]
    worker = build_worker(settings, (QUEUE_BG,))
    assert isinstance(worker.runtime.remover, models.BackgroundRemover) and worker.runtime.detector is None
    worker.work(burst=True)
    assert [poll(client, acme, i)["state"] for i in ids] == ["finished"] * 3
    assert len(created) == 1


def test_background_removal_end_to_end_in_a_worker_process(
    client, acme, photo_server, photos, settings, tmp_path
):
    """Progress seen by polling while a real `python worker.py` process works: never down, ends at 100."""
    import subprocess
    import sys
    import time

    from imgproc.config import ROOT
    from tests.conftest import process_env

    photo_server.serve("/astronaut.jpg", photos["astronaut"])
    job_id = submit(client, BG, acme, record_id="astro-bg", image_url=photo_server.url("/astronaut.jpg"))
    env = process_env(settings)
    log = open(tmp_path / "worker.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "worker.py", "--queues", "bg-removal", "--burst"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    seen = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = poll(client, acme, job_id)
            seen.append(job["progress"])
            if job["state"] in ("finished", "failed"):
                break
            time.sleep(0.05)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        log.seek(0)
        output = log.read()
        log.close()
    assert job["state"] == "finished", (job, output)
    assert seen == sorted(seen) and seen[-1] == 100 and len(set(seen)) >= 3, seen
    assert job["result"]["model"] == "isnet-general-use" and job["result"]["format"] == "png"
    img = np.asarray(result_image(settings, job))
    assert img.shape == (512, 512, 4)
    alpha = img[:, :, 3]
    assert alpha[:20, :20].max() < 10 and alpha[:20, -20:].max() < 10  # top corners transparent
    assert alpha[-5:, :5].max() < 64  # bottom left: the flag's dark edge beside the suit, mostly background
    assert alpha[150, 400] < 10  # the model shuttle behind her is background too
    assert alpha[130, 225] > 245  # the face, opaque


def test_light_job_to_cloudinary_and_mariadb(client, acme, photo_server, photos, runtime, work, mariadb_url):
    """The production path: results uploaded through the real Cloudinary SDK, records on MariaDB.

    The stub verifies each upload's signature; a 503 from it is retried with backoff.
    """
    import urllib.request

    from imgproc.adapters.db import make_engine
    from imgproc.adapters.records import Records
    from imgproc.adapters.storage import make_storage
    from tests.cloudinary_stub import CloudinaryStub

    with CloudinaryStub() as cdn:
        settings = runtime.settings.replace(cloudinary_url=cdn.url, database_url=mariadb_url)
        runtime.storage = make_storage(settings)
        engine = make_engine(settings)
        runtime.records = Records(engine, max_fields=settings.db_max_fields)
        photo_server.serve("/coffee.jpg", photos["coffee"])
        cdn.fail_next(1, status=503)
        job_id = submit(
            client,
            LIGHT,
            acme,
            record_id="cup",
            image_url=photo_server.url("/coffee.jpg"),
            options={"resize": [200, 200], "fit": "cover", "format": "webp"},
        )
        work()
        job = poll(client, acme, job_id)
        assert job["state"] == "finished" and job["attempts"] == 2, job
        assert len(cdn.uploads) == 1 and cdn.uploads[0].public_id.startswith("imgproc/acme/")
        with urllib.request.urlopen(job["result"]["url"]) as response:
            img = Image.open(io.BytesIO(response.read()))
            assert img.format == "WEBP" and img.size == (200, 200)
        row = runtime.records.get("acme", "cup")
        assert row["processed_url"] == job["result"]["url"] and row["processed"]
        engine.dispose()
