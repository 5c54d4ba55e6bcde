"""An upload leaves Redis when its job ends for good; what one vendor holds there is bounded (issue 22, 3).

Before, an upload was kept for the result's lifetime (24 h) unless its job finished: a 20 MiB upload that
failed ``unsupported_image`` kept its key, and within the default limits one vendor pinned ~4 GiB an hour.
On a Redis of our own, so that its ``used_memory`` is these tests' alone.
"""

from __future__ import annotations

import json
import os

import pytest
import redis as redis_lib
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from imgproc.jobtypes import QUEUE_LIGHT
from imgproc.queueing import uploads
from imgproc.worker import build_worker
from tests.conftest import worker_runtime

LIGHT = "/api/image-queue/process-image-queue"
MIB = 1024 * 1024


@pytest.fixture
def settings(settings, own_redis):
    return settings.replace(redis_url=own_redis.url, max_image_bytes=2 * MIB, vendor_upload_bytes=40 * MIB)


@pytest.fixture
def conn(own_redis):
    conn = redis_lib.Redis.from_url(own_redis.url)
    yield conn
    conn.close()


def upload(client, headers: dict, data: bytes, record_id: str):
    """A multipart upload, built by hand: the test client spools big files to temp files left open."""
    body = (
        b'--x\r\nContent-Disposition: form-data; name="record_id"\r\n\r\n'
        + record_id.encode()
        + b'\r\n--x\r\nContent-Disposition: form-data; name="options"\r\n\r\n'
        + json.dumps({"resize": [32, 32]}).encode()
        + b'\r\n--x\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n\r\n'
        + data
        + b"\r\n--x--\r\n"
    )
    return client.post(LIGHT, headers=headers, content_type="multipart/form-data; boundary=x", data=body)


def upload_keys(conn) -> list[bytes]:
    return list(conn.scan_iter("imgproc:upload:*"))


def test_failed_and_cancelled_uploads_leave_redis(client, vendor_key, settings, conn):
    acme = vendor_key("acme")
    before = conn.info("memory")["used_memory"]
    n = 10
    ids = []
    for i in range(n):  # not an image: each fails unsupported_image, a permanent error
        response = upload(client, acme, os.urandom(2 * MIB), f"bad-{i}")
        assert response.status_code == 202, response.json
        ids.append(response.json["job_id"])
    held = conn.info("memory")["used_memory"] - before
    assert uploads.held(conn, "acme") == n * 2 * MIB
    with worker_runtime(settings, conn) as runtime:
        build_worker(settings, (QUEUE_LIGHT,), runtime=runtime).work(burst=True)
    states = {client.get(f"/api/image-queue/job/{j}", headers=acme).json["error"]["code"] for j in ids}
    assert states == {"unsupported_image"}
    after = conn.info("memory")["used_memory"] - before
    left = upload_keys(conn)
    ttls = [conn.ttl(key) for key in left]
    print(
        f"\nRedis used_memory after {n} failed 2 MiB uploads: +{held / MIB:.1f} MiB while queued, "
        f"+{after / MIB:.1f} MiB once failed; upload keys left: {len(left)} (TTL {ttls[:1]} s)"
    )
    assert left == [], ttls  # before: all 10, each for another 86,400 s
    assert uploads.held(conn, "acme") == 0
    assert after < 4 * MIB, after

    # A cancelled upload (still in its vendor's lane: no worker) leaves at once too.
    job_id = upload(client, acme, os.urandom(MIB), "cancelled").json["job_id"]
    assert upload_keys(conn) == [f"imgproc:upload:{job_id}".encode()]
    assert client.delete(f"/api/image-queue/job/{job_id}", headers=acme).json["state"] == "canceled"
    assert upload_keys(conn) == [] and uploads.held(conn, "acme") == 0

    # A failed upload's job cannot be retried without its photo: 409, saying so.
    response = client.post(f"/api/image-queue/job/{ids[0]}/retry", headers=acme)
    assert response.status_code == 409 and "upload it again" in response.json["error"]["message"]


def test_an_upload_whose_worker_died_on_its_last_attempt_leaves_redis(client, vendor_key, settings, conn):
    """rq's sweep of abandoned jobs fails a job with no attempt left: its upload goes with it."""
    acme = vendor_key("acme")
    job_id = upload(client, acme, os.urandom(MIB), "lost").json["job_id"]
    with worker_runtime(settings, conn) as runtime:
        worker = build_worker(settings, (QUEUE_LIGHT,), runtime=runtime)
        worker.feed()  # the job leaves its lane for the RQ queue, where a worker took it and died
        (queue,) = worker.queues
        job = Job.fetch(job_id, connection=conn)
        queue.remove(job_id)
        job.retries_left = 0  # its last attempt, as after two others were lost
        job.set_status(JobStatus.STARTED)
        job.save()
        conn.zadd(StartedJobRegistry(queue=queue).key, {f"{job_id}:lost-execution": 1})  # long expired
        worker.clean_registries()
    job = client.get(f"/api/image-queue/job/{job_id}", headers=acme).json
    assert job["state"] == "failed" and job["error"]["code"] == "worker_lost", job
    assert upload_keys(conn) == [] and uploads.held(conn, "acme") == 0


def test_one_vendors_waiting_uploads_are_bounded(client, vendor_key, settings, conn):
    limit = settings.vendor_upload_bytes
    acme, other = vendor_key("acme"), vendor_key("other")
    photo = os.urandom(2 * MIB)
    accepted = []
    for i in range(limit // len(photo)):
        response = upload(client, acme, photo, f"a-{i}")
        assert response.status_code == 202, response.json
        accepted.append(response.json["job_id"])
    refused = upload(client, acme, photo, "one-too-many")
    assert refused.status_code == 429, refused.json
    assert refused.json["error"]["code"] == "too_many_uploads"
    assert refused.json["error"]["details"] == {"held": limit, "limit": limit}
    assert refused.headers["Retry-After"] == "5"
    # Another vendor is not counted with it.
    assert upload(client, other, photo, "b-0").status_code == 202
    # One of its jobs ended (cancelled here): room for one more.
    client.delete(f"/api/image-queue/job/{accepted[0]}", headers=acme)
    assert upload(client, acme, photo, "a-again").status_code == 202
    assert uploads.held(conn, "acme") == limit


def test_an_upload_that_expired_unseen_leaves_the_count(conn):
    """A job lost for good never drops its upload: the key expires, and the next upload takes it off."""
    uploads.hold(conn, "acme", "lost", b"x" * 100, ttl=1, limit=150)
    conn.zadd("imgproc:upload-expiries:acme", {"lost": 0})  # as if its second had passed
    uploads.hold(conn, "acme", "next", b"y" * 100, ttl=60, limit=150)
    assert uploads.held(conn, "acme") == 100
