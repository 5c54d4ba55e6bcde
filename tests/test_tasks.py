"""The job function with a Runtime of fakes: the seams of the worker, and jobs queued under the old paths."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from rq import Queue
from rq.job import Job

from imgproc.errors import TransientError
from imgproc.jobtypes import QUEUE_BG, QUEUE_LIGHT, QUEUES, TASK, Payload
from imgproc.worker import Runtime, build_worker


class FakeFetcher:
    def __init__(self, photos: dict[str, bytes]):
        self.photos = photos
        self.fetched: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.photos[url]

    def close(self) -> None:
        pass


class FakeStorage:
    def __init__(self):
        self.stored: dict[str, bytes] = {}

    def put(self, key: str, data: bytes, content_type: str) -> str:
        self.stored[key] = data
        return f"mem://{key}"

    def url_of(self, key: str) -> str | None:
        return f"mem://{key}" if key in self.stored else None


class FakeRecords:
    def __init__(self):
        self.saved: list[tuple] = []

    def save_result(self, vendor, record_id, operation, url, original_url=None) -> None:
        self.saved.append((vendor, record_id, operation, url, original_url))


class SquareMatting:
    """A background-removal model that keeps the middle half of every photo (a worker's ``Remover``)."""

    provider = "fake"
    batchers: dict = {}

    def retune(self, workers: int) -> bool:
        return False

    def mask(self, rgb: np.ndarray, model: str) -> np.ndarray:
        height, width = rgb.shape[:2]
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
        return mask


def _png(size=(80, 60), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def fakes(settings, redis_conn):
    photo = "https://photos.example/a.png"
    runtime = Runtime(
        settings=settings,
        conn=redis_conn,
        fetcher=FakeFetcher({photo: _png()}),
        storage=FakeStorage(),
        records=FakeRecords(),
        remover=SquareMatting(),
    )
    return runtime, photo


def _enqueue(conn, queue: str, func: str, payload: dict) -> Job:
    meta = {
        "vendor": payload.get("vendor"),
        "type": payload.get("type"),
        "record_id": payload.get("record_id"),
        "progress": 0,
        "stage": "queued",
        "attempts": 0,
        "max_attempts": 1,
    }
    return Queue(queue, connection=conn).enqueue(func, payload, meta=meta)


def test_a_job_runs_through_fakes_of_every_part(fakes):
    runtime, photo = fakes
    payload = Payload(
        "acme",
        "remove-bg",
        "emp/7",
        {
            "model": "isnet-general-use",
            "format": "png",
            "bgcolor": None,
            "alpha_matting": False,
            "post_process_mask": False,
            "max_size": None,
        },
        image_url=photo,
    )
    job = _enqueue(runtime.conn, QUEUE_BG, TASK, payload.asdict())
    build_worker(runtime.settings, QUEUES, runtime=runtime).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished", job.meta
    result = job.return_value()
    key = f"acme/{job.id}/emp-7-bg.png"
    assert result["url"] == f"mem://{key}" and (result["width"], result["height"]) == (80, 60)
    assert runtime.fetcher.fetched == [photo]
    assert runtime.records.saved == [("acme", "emp/7", "remove-bg", f"mem://{key}", photo)]
    cut = np.asarray(Image.open(io.BytesIO(runtime.storage.stored[key])))
    assert cut.shape == (60, 80, 4) and cut[0, 0, 3] == 0 and cut[30, 40, 3] == 255
    assert job.meta["stage"] == "done" and job.meta["progress"] == 100 and job.meta["attempts"] == 1


@pytest.mark.parametrize("old_path", ["imgproc.tasks.process_image", "imgproc.tasks.remove_bg"])
def test_a_job_queued_under_the_old_task_path_still_runs(fakes, old_path):
    """rq stored the function path of jobs enqueued before the role packages: imgproc.tasks.*."""
    runtime, photo = fakes
    # The payload dict exactly as imgproc 0.1's queue.py built it.
    if old_path.endswith("process_image"):
        queue, payload = (
            QUEUE_LIGHT,
            {
                "vendor": "acme",
                "type": "process-image",
                "record_id": "r1",
                "image_url": photo,
                "upload": False,
                "options": {
                    "resize": [40, 30],
                    "fit": "contain",
                    "format": "jpg",
                    "quality": 85,
                    "strip_metadata": True,
                },
            },
        )
    else:
        queue, payload = (
            QUEUE_BG,
            {
                "vendor": "acme",
                "type": "remove-bg",
                "record_id": "r1",
                "image_url": photo,
                "upload": False,
                "options": {
                    "model": "isnet-general-use",
                    "format": "webp",
                    "bgcolor": None,
                    "alpha_matting": False,
                    "post_process_mask": False,
                    "max_size": None,
                },
            },
        )
    job = _enqueue(runtime.conn, queue, old_path, payload)
    assert job.func_name == old_path
    build_worker(runtime.settings, QUEUES, runtime=runtime).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished", job.meta
    assert runtime.records.saved[0][:3] == ("acme", "r1", payload["type"])
    assert job.return_value()["format"] == payload["options"]["format"]


def test_a_payload_this_worker_cannot_read_fails_the_job_at_once(fakes):
    runtime, photo = fakes
    payload = {**Payload("acme", "process-image", "r1", {}, image_url=photo).asdict(), "priority": "high"}
    job = _enqueue(runtime.conn, QUEUE_LIGHT, TASK, payload)
    build_worker(runtime.settings, QUEUES, runtime=runtime).work(burst=True)
    job.refresh()
    assert job.get_status() == "failed"
    assert job.meta["error"]["code"] == "internal" and "priority" in job.meta["error"]["message"]
    assert runtime.fetcher.fetched == []


def test_payload_round_trip():
    payload = Payload("acme", "crop-face", "r1", {"aspect": "3:4"}, upload=True)
    assert Payload.decode(payload.asdict()) == payload
    assert payload.job_type.queue == "face-crop"
    with pytest.raises(Exception, match="type 'resize'"):
        Payload.decode({**payload.asdict(), "type": "resize"})


class DownRecords(FakeRecords):
    """A records store whose database refuses the first ``failures`` writes, as a restarting MariaDB."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures
        self.calls = 0

    def save_result(self, *args, **kwargs) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientError(
                'database update record failed: (2003, "Can\'t connect to MySQL server")',
                code="database_failed",
            )
        super().save_result(*args, **kwargs)


@pytest.mark.parametrize(("failures", "wait", "state"), [(2, 10.0, "finished"), (50, 2.0, "failed")])
def test_a_record_waits_for_the_database_within_one_attempt(fakes, failures, wait, state):
    """A short outage (1 + 2 s here) is waited out in the attempt; a longer one fails the attempt."""
    runtime, photo = fakes
    runtime.settings = runtime.settings.replace(database_wait=wait)
    runtime.records = DownRecords(failures)
    options = {"resize": None, "fit": "contain", "format": "png", "quality": 85, "strip_metadata": True}
    payload = Payload("acme", "process-image", "emp/8", options, image_url=photo)
    job = _enqueue(runtime.conn, QUEUE_LIGHT, TASK, payload.asdict())
    started = time.monotonic()
    build_worker(runtime.settings, QUEUES, runtime=runtime).work(burst=True)
    job.refresh()
    assert job.get_status() == state, job.meta
    assert job.meta["attempts"] == 1
    if state == "finished":
        assert runtime.records.calls == 3 and len(runtime.records.saved) == 1
        assert 3 <= time.monotonic() - started < 8
    else:
        assert job.meta["error"]["code"] == "database_failed" and runtime.records.saved == []
