"""The job's state (``imgproc.queueing.state``) reads what imgproc stored before it existed.

A job enqueued by the code before ``JobState`` (issue 24) is written here as
that code wrote it, key by key (``queueing/jobs.py`` at ffbfb15): the new
worker runs it, the new API reads it, its batch and an operator's retry too.
"""

from __future__ import annotations

import json
import pickle
import time
import uuid

from rq import Queue, Retry
from rq.job import Job
from rq.registry import FailedJobRegistry

from imgproc.api.options import validate
from imgproc.jobtypes import QUEUE_LIGHT, TASK
from imgproc.queueing import JobQueue, retries, uploads
from imgproc.queueing.fairshare import FairShare
from imgproc.queueing.keys import KEY_BATCH, KEY_VENDOR_JOBS
from imgproc.queueing.state import JobState

JOB = "/api/image-queue/job/{}"


def enqueue_as_before(
    conn, settings, vendor: str, options: dict, photo: bytes | None = None, image_url: str | None = None
) -> tuple[str, str]:
    """One light job (an uploaded photo or a URL) in a batch of one, stored as imgproc did before JobState."""
    job_id, batch_id = uuid.uuid4().hex, "b_" + uuid.uuid4().hex
    if photo is not None:
        uploads.hold(conn, vendor, job_id, photo, settings.result_ttl, 0)
    payload = {
        "vendor": vendor,
        "type": "process-image",
        "record_id": "old-1",
        "options": validate("process-image", options, settings),
        "image_url": image_url,
        "upload": photo is not None,
        "webhook_url": None,
    }
    meta = {
        "vendor": vendor,
        "type": "process-image",
        "record_id": "old-1",
        "batch_id": batch_id,
        "progress": 0,
        "stage": "queued",
        "attempts": 0,
        "max_attempts": settings.max_attempts,
    }
    queue = Queue(QUEUE_LIGHT, connection=conn)
    pushed = []
    queue.push_job_id = lambda job_id, pipeline=None, at_front=False: pushed.append(job_id)
    fair = FairShare(conn, settings.vendor_concurrency)
    with conn.pipeline() as pipe:
        data = Queue.prepare_data(
            TASK,
            args=(payload,),
            job_id=job_id,
            meta=meta,
            retry=Retry(max=settings.max_retries, interval=settings.retry_intervals),
            timeout=settings.job_timeout,
            result_ttl=settings.result_ttl,
            failure_ttl=settings.failure_ttl,
            description=f"process-image {vendor}/old-1",
        )
        pipe.zadd(KEY_VENDOR_JOBS.format(vendor), {job_id: time.time()})
        batch = {"vendor": vendor, "type": "process-image", "created_at": time.time(), "job_ids": [job_id]}
        pipe.set(KEY_BATCH.format(batch_id), json.dumps({**batch, "webhook_url": None}))
        queue.enqueue_many([data], pipeline=pipe)
        fair.admit(pipe, QUEUE_LIGHT, vendor, pushed)
        fair.feed(queue, pipe)
        pipe.execute()
    return job_id, batch_id


def test_a_job_stored_before_job_state_runs_and_reads_the_same(
    client, vendor_key, redis_conn, runtime, work, photos
):
    key = vendor_key("acme")
    options = {"resize": [24, 24], "format": "png"}
    photo = photos["astronaut"]
    job_id, batch_id = enqueue_as_before(redis_conn, runtime.settings, "acme", options, photo=photo)
    queued = client.get(JOB.format(job_id), headers=key).json
    assert (queued["state"], queued["stage"], queued["progress"], queued["attempts"]) == (
        "queued",
        "queued",
        0,
        0,
    )
    assert (queued["record_id"], queued["batch_id"], queued["type"]) == ("old-1", batch_id, "process-image")
    assert queued["max_attempts"] == runtime.settings.max_attempts

    work()

    view = client.get(JOB.format(job_id), headers=key).json
    assert (view["state"], view["stage"], view["progress"], view["attempts"]) == ("finished", "done", 100, 1)
    assert (view["result"]["width"], view["result"]["height"], view["result"]["format"]) == (24, 24, "png")
    batch = client.get(f"/api/image-queue/batch/{batch_id}", headers=key).json
    assert batch["counts"]["finished"] == 1 and batch["jobs"][0]["record_id"] == "old-1"
    assert batch["jobs"][0]["stage"] == "done"
    assert client.get(JOB.format(job_id), headers=vendor_key("other")).status_code == 404
    assert uploads.get(redis_conn, job_id) is None  # its photo dropped with its end


def test_the_stored_keys_are_the_ones_imgproc_always_wrote(redis_conn):
    """A state written now is read by the code before it: the same keys, the same meaning."""
    state = JobState.new(
        vendor="acme", job_type="process-image", record_id="r", batch_id=None, max_attempts=3
    )
    state.begin_attempt()
    state.reach("uploading")
    state.output = {"url": "/media/x.png"}
    state.mark_saved()
    state.writeback = {"state": "written"}
    state.error = {"code": "timeout", "message": "slow", "retryable": True}
    stored = pickle.loads(pickle.dumps(state.meta))
    assert stored == {
        "vendor": "acme",
        "type": "process-image",
        "record_id": "r",
        "batch_id": None,
        "progress": 80,
        "stage": "uploading",
        "attempts": 1,
        "max_attempts": 3,
        "output": {"url": "/media/x.png"},
        "saved": True,
        "writeback": {"state": "written"},
        "error": {"code": "timeout", "message": "slow", "retryable": True},
    }
    # Progress never goes down, not even when a retry starts over.
    state.reach("fetching")
    assert (state.stage, state.progress) == ("fetching", 80)


def test_an_operator_retry_keeps_what_is_history(client, vendor_key, redis_conn, runtime, work, photo_server):
    """reset_for_retry: the error and the output go, attempts and progress stay, max_attempts grows."""
    key = vendor_key("acme")
    photo_server.serve("/broken.jpg", b"not an image")
    url = photo_server.url("/broken.jpg")
    job_id, _ = enqueue_as_before(redis_conn, runtime.settings, "acme", {"resize": [24, 24]}, image_url=url)
    work()
    failed = client.get(JOB.format(job_id), headers=key).json
    assert failed["state"] == "failed" and failed["error"]["code"] == "unsupported_image"
    assert job_id in FailedJobRegistry(QUEUE_LIGHT, connection=redis_conn).get_job_ids()

    jobs = JobQueue(redis_conn, runtime.settings)
    retried = retries.retry(jobs, job_id)
    state = JobState.of(Job.fetch(retried.id, connection=redis_conn))
    assert state.error is None and state.output is None
    assert state.stage == "queued" and state.attempts == failed["attempts"]
    assert state.max_attempts(0) == failed["attempts"] + runtime.settings.max_attempts
    jobs_view = client.get(JOB.format(job_id), headers=key).json
    assert jobs_view["state"] == "queued" and jobs_view["error"] is None
