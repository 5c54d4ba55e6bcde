"""Another vendor's job behind a vendor's retries, with a real ``python worker.py`` (issue 22, finding 5).

Each of vendor A's retried jobs takes ~1.5 s (its photo drips in, then fails again); vendor B sends one
light job right after A's 6 retries. Before, the retries sat in the RQ queue ahead of B's lane.
"""

import time

from rq.job import Job

from imgproc.testing import wait_for

LIGHT = "/api/image-queue/process-image-queue"


def test_another_vendors_job_starts_within_the_retrying_vendors_cap(
    client, vendor_key, photo_server, photos, redis_conn, worker_env, workers
):
    a, b = vendor_key("a"), vendor_key("b")
    (worker,) = workers(worker_env(), "image-processing")
    wait_for(lambda: worker.ready(redis_conn), 60, "the worker")
    photo_server.serve("/a.jpg", b"not an image")
    photo_server.serve("/coffee.jpg", photos["coffee"])

    def enqueue(headers, path: str, record_id: str) -> str:
        body = {"record_id": record_id, "image_url": photo_server.url(path), "options": {"resize": [32, 32]}}
        return client.post(LIGHT, json=body, headers=headers).json["job_id"]

    def state(headers, job_id: str) -> str:
        return client.get(f"/api/image-queue/job/{job_id}", headers=headers).json["state"]

    failed = [enqueue(a, "/a.jpg", f"a{i}") for i in range(6)]
    wait_for(lambda: all(state(a, j) == "failed" for j in failed), 30, "A's jobs to fail")
    photo_server.slow_drip("/a.jpg", total_bytes=40, chunk=10, interval=0.5)  # ~1.5 s, then fails again
    for job_id in failed:
        assert client.post(f"/api/image-queue/job/{job_id}/retry", headers=a).status_code == 200
    sent = time.time()
    single = enqueue(b, "/coffee.jpg", "b0")
    wait_for(lambda: state(b, single) == "finished", 60, "B's job", interval=0.2)
    started = Job.fetch(single, connection=redis_conn).started_at.timestamp()
    starts = [Job.fetch(j, connection=redis_conn).started_at for j in failed]  # None: not yet
    before = sum(s is not None and s.timestamp() < started for s in starts)
    print(f"\nB's job started {started - sent:.1f} s after it was sent, after {before} of A's 6 retries")
    assert before <= 2  # A's cap; before: all 6
