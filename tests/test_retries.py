"""A retry is the enqueue it is (issue 22, finding 5): it waits in its vendor's lane and uses its limits.

Before, ``POST /job/<id>/retry`` put the job straight into the RQ queue, ahead of every other vendor's
lane, and cost one general request: vendor A retried 6 failed jobs and vendor B's light job started
after 18.3 s instead of 5.7 s, and a vendor past its background-removal limit could retry for ever.
"""

from __future__ import annotations

import pytest
from rq import Queue
from rq.job import Job

from imgproc.jobtypes import QUEUE_LIGHT, QUEUES
from imgproc.worker import build_worker
from tests.conftest import worker_runtime

LIGHT = "/api/image-queue/process-image-queue"
BG = "/api/image-queue/remove-bg-queue"


@pytest.fixture
def settings(settings):
    return settings.replace(max_attempts=1, limit_image="30 per minute", limit_bg_removal="2 per minute")


@pytest.fixture
def run_jobs(settings, redis_conn):
    """``run_jobs()``: an in-process worker without models runs every queued job, in fair-share order."""

    def run():
        with worker_runtime(settings, redis_conn) as runtime:
            build_worker(settings, QUEUES, runtime=runtime).work(burst=True)

    return run


def enqueue(client, headers, endpoint: str, url: str, record_id: str) -> str:
    response = client.post(endpoint, json={"record_id": record_id, "image_url": url}, headers=headers)
    assert response.status_code == 202, response.json
    return response.json["job_id"]


def failed_jobs(client, headers, photo_server, endpoint: str, n: int, prefix: str, run_jobs) -> list[str]:
    """``n`` jobs whose photo is not one: each fails ``unsupported_image``, for good."""
    photo_server.serve("/not-a-photo.jpg", b"not an image")
    ids = [
        enqueue(client, headers, endpoint, photo_server.url("/not-a-photo.jpg"), f"{prefix}{i}")
        for i in range(n)
    ]
    run_jobs()
    for job_id in ids:
        assert client.get(f"/api/image-queue/job/{job_id}", headers=headers).json["state"] == "failed"
    return ids


def test_retries_wait_in_their_vendors_lane(client, vendor_key, photo_server, photos, redis_conn, run_jobs):
    a, b = vendor_key("a"), vendor_key("b")
    retried = failed_jobs(client, a, photo_server, LIGHT, 6, "a", run_jobs)
    photo_server.serve("/coffee.jpg", photos["coffee"])
    for job_id in retried:
        assert client.post(f"/api/image-queue/job/{job_id}/retry", headers=a).status_code == 200
    # Nothing runs yet: vendor A's retries wait in its lane, at most its cap of them in the RQ queue.
    in_queue = Queue(QUEUE_LIGHT, connection=redis_conn).count
    single = enqueue(client, b, LIGHT, photo_server.url("/coffee.jpg"), "b0")
    run_jobs()
    order = sorted(retried + [single], key=lambda j: Job.fetch(j, connection=redis_conn).started_at)
    print(
        f"\nafter 6 retries of vendor A: {in_queue} of them in the RQ queue; "
        f"B's job ran {order.index(single) + 1} of 7"
    )
    assert in_queue <= 2  # before: all 6
    assert order.index(single) <= 2  # before: 7th, after all of A's retries


def test_an_operators_retry_all_waits_in_the_vendors_lanes(
    client, vendor_key, photo_server, redis_conn, run_jobs, app
):
    a, ops = vendor_key("a"), vendor_key("ops", operator=True)
    failed_jobs(client, a, photo_server, LIGHT, 6, "a", run_jobs)
    retried = client.post("/api/image-queue/failed/retry", headers=ops).json["retried"]
    assert len(retried) == 6
    waiting = app.extensions["imgproc"].jobs.fair.waiting(QUEUE_LIGHT)
    assert Queue(QUEUE_LIGHT, connection=redis_conn).count == 2 and waiting == 4  # before: 6 and 0


def test_a_retry_uses_the_limits_of_the_enqueue_it_is(client, vendor_key, photo_server, run_jobs):
    a = vendor_key("a")
    # Two background removals use the whole background-removal limit (2 per minute).
    bg = failed_jobs(client, a, photo_server, BG, 2, "bg", run_jobs)
    light = failed_jobs(client, a, photo_server, LIGHT, 1, "light", run_jobs)
    image_left = client.get("/api/image-queue/limits", headers=a).json["limits"]["image"]["remaining"]

    refused = client.post(f"/api/image-queue/job/{bg[0]}/retry", headers=a)
    assert refused.status_code == 429, refused.json  # before: 200, the model run again past its limit
    assert "bg-removal limit" in refused.json["error"]["message"]
    assert client.post(f"/api/image-queue/job/{light[0]}/retry", headers=a).status_code == 200
    limits = client.get("/api/image-queue/limits", headers=a).json["limits"]
    assert limits["image"]["remaining"] == image_left - 1  # before: unchanged
    assert limits["bg-removal"]["remaining"] == 0
    # Another vendor's job id is a 404 and costs nothing of the limits.
    b = vendor_key("b")
    assert client.post(f"/api/image-queue/job/{bg[1]}/retry", headers=b).status_code == 404
    assert client.get("/api/image-queue/limits", headers=b).json["limits"]["image"]["remaining"] == 30
