"""A dead worker's job starts again within seconds, with no backoff; a live worker's long job is left alone.

Both with real ``python worker.py`` processes. The killed worker runs with the product's defaults
(heartbeat 5 s, sweep 10 s, retry backoff 5 s), where its job used to start again only after a
minute: rq's sweep scheduled a retry, and the dead worker's scheduler lock held it for 60 s more.
"""

import os
import signal
import time

import psutil
import pytest
from rq.job import Job

from imgproc.testing import wait_for

LIGHT = "/api/image-queue/process-image-queue"
DEFAULTS = {
    "IMGPROC_HEARTBEAT_INTERVAL": "5",
    "IMGPROC_MAINTENANCE_INTERVAL": "10",
    "IMGPROC_RETRY_BACKOFF": "5",
}


def enqueue(client, headers, url: str, record_id: str) -> str:
    body = {"record_id": record_id, "image_url": url, "options": {"resize": [32, 32]}}
    response = client.post(LIGHT, json=body, headers=headers)
    assert response.status_code == 202, response.json
    return response.json["job_id"]


@pytest.fixture
def settings(settings):
    """The API enqueues with the default retry backoff (5 s, then 10 s)."""
    return settings.replace(retry_backoff=5.0)


def test_a_killed_workers_job_starts_again_within_30_s(
    client, vendor_key, photo_server, photos, redis_conn, worker_env, workers
):
    acme = vendor_key("acme")
    env = worker_env(IMGPROC_FETCH_DEADLINE="300", IMGPROC_FETCH_READ_TIMEOUT="60", **DEFAULTS)
    # The victim starts first: it holds the scheduler lock (the worst case), and it alone takes the job,
    # whose photo drips for minutes: the job is mid-fetch when its worker is killed.
    (victim,) = workers(env, "image-processing")
    wait_for(lambda: victim.ready(redis_conn), 90, "the first worker")
    photo_server.slow_drip("/slow.jpg", total_bytes=10_000, chunk=10, interval=1.0)
    job_id = enqueue(client, acme, photo_server.url("/slow.jpg"), "killed")
    poll = lambda: client.get(f"/api/image-queue/job/{job_id}", headers=acme).json  # noqa: E731
    wait_for(lambda: poll()["state"] == "started", 60, "the job to start")
    (survivor,) = workers(env, "image-processing")
    wait_for(lambda: survivor.ready(redis_conn), 90, "the second worker")
    photo_server.serve("/slow.jpg", photos["coffee"])  # the next attempt gets the photo at once
    # As a container's kill or the OOM killer does: the worker and its children (its scheduler) at once.
    family = [victim.pid] + [child.pid for child in psutil.Process(victim.pid).children(recursive=True)]
    killed_at = time.monotonic()
    for pid in family:
        os.kill(pid, signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL

    job = wait_for(lambda: (j := poll())["attempts"] == 2 and j, 90, "the job's second attempt", interval=0.2)
    restarted = time.monotonic() - killed_at
    job = wait_for(lambda: (j := poll())["state"] == "finished" and j, 60, "the second attempt to finish")
    print(f"\nkilled worker's job started again {restarted:.1f} s after the kill (defaults: 5 s heartbeat)")
    assert restarted < 30, survivor.log()
    assert Job.fetch(job_id, connection=redis_conn).worker_name == survivor.name
    assert job["attempts"] == 2 and job["error"] is None


def test_a_long_job_on_a_live_worker_is_never_taken_for_abandoned(
    client, vendor_key, photo_server, photos, redis_conn, worker_env, workers
):
    acme = vendor_key("acme")
    # Heartbeats every second: a job is abandoned 3 s after its worker's last beat; this one runs ~12 s,
    # while a second worker looks for abandoned jobs every second.
    env = worker_env(IMGPROC_FETCH_DEADLINE="120", IMGPROC_FETCH_READ_TIMEOUT="60")
    pool = workers(env, "image-processing", n=2)
    wait_for(lambda: all(w.ready(redis_conn) for w in pool), 90, "2 workers")
    photo_server.slow_drip("/slow.jpg", total_bytes=120, chunk=10, interval=1.0)
    job_id = enqueue(client, acme, photo_server.url("/slow.jpg"), "long")
    poll = lambda: client.get(f"/api/image-queue/job/{job_id}", headers=acme).json  # noqa: E731
    started = time.monotonic()
    job = wait_for(
        lambda: (j := poll())["state"] in ("finished", "failed") and j, 120, "the long job", interval=0.5
    )
    took = time.monotonic() - started
    # The dripped bytes are no photo: the one attempt fails as unsupported, never as a lost worker.
    assert took > 10, took
    assert job["attempts"] == 1, job
    assert job["error"]["code"] == "unsupported_image", job
    assert photo_server.hits["/slow.jpg"] == 1
