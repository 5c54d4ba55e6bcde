"""What a job stores is JSON's own types, and a stored value that is not never fails a read of it (issue 21).

A us-passport crop of a two-face photo large enough not to be upscaled once
stored a NumPy bool (``upscaled``): every status read of the job answered
500, its worker quit on the final event. Now the operations report plain
types, the worker refuses to store anything else, and the readers show
whatever they find as text.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from rq.job import Job, JobStatus
from rq.results import Result

from imgproc.api.options import validate
from imgproc.config import Settings
from imgproc.errors import PermanentError
from imgproc.jobtypes import JOB_TYPES
from imgproc.presets import PRESETS
from imgproc.processing import operations
from imgproc.processing.operations import Tools
from tests.test_idphoto import CachedMatting

FACE = "/api/image-queue/crop-face-queue"
LIGHT = "/api/image-queue/process-image-queue"
BULK_LIGHT = "/api/image-queue/bulk-process-image"


class Odd:
    """A stored value JSON has no form for (at module level, so that pickle finds it again)."""

    def __str__(self) -> str:
        return "odd one"


def assert_plain(value, where: str = "result") -> None:
    """Only JSON's own types, exactly: a NumPy bool equals a bool, yet ``json`` refuses it."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, f"{where}: key {key!r}"
            assert_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{where}[{i}]")
    else:
        assert type(value) in (str, int, float, bool, type(None)), f"{where}: {type(value).__name__}"


@pytest.fixture(scope="module")
def two_large(photos) -> bytes:
    """The two-face photo at three times its size: a passport crop of it is not upscaled."""
    img = Image.open(io.BytesIO(photos["two-people"]))
    buf = io.BytesIO()
    img.resize((img.width * 3, img.height * 3), Image.Resampling.LANCZOS).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _upload(client, headers, data: bytes, options: str):
    return client.post(
        FACE,
        headers=headers,
        content_type="multipart/form-data",
        data={"record_id": "two", "options": options, "image": (io.BytesIO(data), "two.jpg")},
    )


def test_a_us_passport_crop_of_two_faces_reads_back_as_plain_json(client, vendor_key, two_large, work):
    acme = vendor_key("acme")
    response = _upload(client, acme, two_large, '{"preset": "us-passport"}')
    assert response.status_code == 202, response.json
    work()
    status = client.get(response.json["status_url"], headers=acme)
    assert status.status_code == 200, status.json
    result = status.json["result"]
    assert status.json["state"] == "finished" and result["faces"] == 2 and result["upscaled"] is False
    assert "faces" in result["compliance"]["failed"] and result["compliance"]["compliant"] is False
    # Its final event was published too (the worker had quit on it).
    events = client.get(response.json["status_url"] + "/events", headers=acme)
    assert events.status_code == 200 and '"state":"finished"' in events.get_data(as_text=True)


def test_every_job_type_and_preset_reports_plain_json(models, photos, two_large):
    remover, detector = models
    tools = Tools(max_pixels=50_000_000, remover=CachedMatting(remover), detector=detector, mask_first=True)
    settings = Settings()

    def run(job_type: str, data: bytes, **given):
        opts = validate(JOB_TYPES[job_type], given, settings)
        return getattr(operations, JOB_TYPES[job_type].operation)(data, opts, tools)

    by_faces = {0: photos["coffee"], 1: photos["astronaut"], 2: two_large}
    for faces, data in by_faces.items():
        crops = [{"preset": name} for name in PRESETS] + [{"aspect": "3:4", "size": [300, 400]}]
        if faces == 1:  # ISNet on a crop of its own: once
            crops.append({"aspect": "1:1", "remove_background": True})
        for given in crops:
            if faces == 0:
                with pytest.raises(PermanentError, match="no face"):
                    run("crop-face", data, **given)
                continue
            out = run("crop-face", data, **given)
            assert out.extra["faces"] == faces
            assert_plain(out.extra, f"crop-face {given} with {faces} faces")
        assert_plain(run("remove-bg", data).extra, f"remove-bg with {faces} faces")
        assert_plain(run("process-image", data, resize=[64, 64]).extra, f"process-image with {faces} faces")
    assert tools.remover.runs == 4  # each photo once (the presets and remove-bg share it), one crop


def test_the_worker_stores_numpy_values_plainly_and_fails_a_value_json_cannot_hold(
    client, vendor_key, photo_server, photos, work, monkeypatch
):
    acme = vendor_key("acme")
    photo_server.serve("/coffee.jpg", photos["coffee"])
    real = operations.process_image

    def reporting(extra: dict):
        def process_image(data, opts, tools):
            out = real(data, opts, tools)
            out.extra = extra
            return out

        monkeypatch.setattr(operations, "process_image", process_image)
        body = {"record_id": "r", "image_url": photo_server.url("/coffee.jpg"), "options": {"resize": [8, 8]}}
        job_id = client.post(LIGHT, headers=acme, json=body).json["job_id"]
        work()
        response = client.get(f"/api/image-queue/job/{job_id}", headers=acme)
        assert response.status_code == 200, response.json
        return response.json

    numbers = {"flag": np.bool_(False), "ratio": np.float32(0.5), "box": np.arange(3), "pair": (1, 2)}
    finished = reporting(numbers)
    assert finished["state"] == "finished", finished["error"]
    result = finished["result"]
    assert (result["flag"], result["ratio"], result["box"], result["pair"]) == (False, 0.5, [0, 1, 2], [1, 2])
    failed = reporting({"compliance": {"odd": Odd()}})
    assert failed["state"] == "failed" and failed["attempts"] == 1 and failed["error"]["code"] == "internal"
    assert "compliance.odd: Odd is not a JSON type" in failed["error"]["message"]


def test_a_stored_value_json_cannot_hold_never_fails_a_read(client, vendor_key, redis_conn):
    acme = vendor_key("acme")
    item = {"record_id": "r", "image_url": "http://127.0.0.1:9/a.jpg"}
    accepted = client.post(BULK_LIGHT, headers=acme, json={"items": [item]}).json
    job_id, batch_id = accepted["job_ids"][0], accepted["batch_id"]
    # As a bug (or a worker from before the check) could have stored it: finished, with an odd result.
    job = Job.fetch(job_id, connection=redis_conn)
    job.meta.update(stage=Odd(), webhook={"state": "delivered", "odd": Odd()}, progress=np.int64(100))
    job.save_meta()
    stored = {"url": "/media/a.png", "flag": np.True_, "odd": Odd(), "nan": float("nan")}
    Result.create(job, Result.Type.SUCCESSFUL, ttl=600, return_value=stored)
    job.set_status(JobStatus.FINISHED)

    status = client.get(f"/api/image-queue/job/{job_id}", headers=acme)
    assert status.status_code == 200, status.json
    result = status.json["result"]
    assert (result["flag"], result["odd"], result["nan"]) == (True, "<Odd: odd one>", None)
    assert status.json["webhook"]["odd"] == "<Odd: odd one>" and status.json["progress"] == 100
    batch = client.get(f"/api/image-queue/batch/{batch_id}", headers=acme)
    assert batch.status_code == 200 and batch.json["jobs"][0]["stage"] == "<Odd: odd one>"
    events = client.get(f"/api/image-queue/job/{job_id}/events", headers=acme)
    assert events.status_code == 200 and '"odd":"<Odd: odd one>"' in events.get_data(as_text=True)
    listing = client.get("/api/image-queue/jobs", headers=acme)
    assert listing.status_code == 200 and listing.json["jobs"][0]["result"]["flag"] is True
