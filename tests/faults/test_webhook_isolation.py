"""A webhook receiver that never answers holds only the webhook worker, never an image worker."""

import json
import time

from imgproc.testing import wait_for
from tests.webhook_receiver import Receiver

LIGHT = "/api/image-queue/process-image-queue"


def test_a_receiver_that_never_answers_does_not_slow_the_image_jobs(
    client, vendor_key, photo_server, photos, redis_conn, worker_env, workers
):
    acme = vendor_key("acme")
    photo_server.serve("/coffee.jpg", photos["coffee"])
    env = worker_env(IMGPROC_WEBHOOK_TIMEOUT="2", IMGPROC_WEBHOOK_BACKOFF="30")
    pool = workers(env, "image-processing") + workers(env, "webhooks")
    wait_for(lambda: all(w.ready(redis_conn) for w in pool), 60, "an image worker and a webhook worker")
    with Receiver(delay=10) as receiver:  # answers nothing for 10 s: past the 2 s timeout
        body = {
            "image_url": photo_server.url("/coffee.jpg"),
            "options": {"resize": [32, 32]},
            "webhook_url": receiver.url,
        }
        started = time.monotonic()
        ids = [
            client.post(LIGHT, json={**body, "record_id": f"r{i}"}, headers=acme).json["job_id"]
            for i in range(6)
        ]

        def states():
            return [client.get(f"/api/image-queue/job/{j}", headers=acme).json for j in ids]

        wait_for(lambda: all(s["state"] == "finished" for s in states()), 30, "the image jobs")
        elapsed = time.monotonic() - started

        # A job's webhook is announced right after its end is saved: a poll in between shows none yet.
        def announced():
            found = states()
            return all(s["webhook"] for s in found) and found

        pending = [s["webhook"]["state"] for s in wait_for(announced, 10, "the webhooks' announces")]
        print(
            f"\n6 light jobs finished in {elapsed:.1f} s while the receiver held its webhook worker; "
            f"webhooks: {pending}"
        )
        # Each delivery waits 2 s for an answer; six of them inside the image worker would take 12 s.
        assert elapsed < 10, elapsed
        assert pending.count("pending") >= 4  # the deliveries were still waiting on the receiver
        wait_for(lambda: len(receiver.received) >= 2, 15, "the webhook worker to try")


def test_webhook_latency_after_a_job_ends(
    client, vendor_key, photo_server, photos, redis_conn, worker_env, workers
):
    """From a job's end (rq's ended_at) to its receiver's first byte, with worker processes."""
    from datetime import UTC

    from rq.job import Job

    acme = vendor_key("acme")
    photo_server.serve("/coffee.jpg", photos["coffee"])
    pool = workers(worker_env(), "image-processing") + workers(worker_env(), "webhooks")
    wait_for(lambda: all(w.ready(redis_conn) for w in pool), 60, "an image worker and a webhook worker")
    with Receiver() as receiver:
        body = {
            "image_url": photo_server.url("/coffee.jpg"),
            "options": {"resize": [32, 32]},
            "webhook_url": receiver.url,
        }
        ids = [
            client.post(LIGHT, json={**body, "record_id": f"r{i}"}, headers=acme).json["job_id"]
            for i in range(10)
        ]
        wait_for(lambda: len(receiver.received) == 10, 30, "10 webhooks")
    by_job = {json.loads(r["body"])["data"]["job_id"]: r["wall"] for r in receiver.received}
    latencies = sorted(
        by_job[j] - Job.fetch(j, connection=redis_conn).ended_at.replace(tzinfo=UTC).timestamp() for j in ids
    )
    print(
        f"\nwebhook latency after the job ended (10 jobs): p50 {latencies[5] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    assert latencies[-1] < 5


def test_a_slow_receiver_delays_only_its_own_vendors_webhooks(
    client, vendor_key, photo_server, photos, redis_conn, worker_env, workers
):
    """Issue 22, finding 6: deliveries were one FIFO; a receiver answering after 12 s held another
    vendor's webhook back for 71 s. Two plain replicas, so two delivery threads."""
    from datetime import UTC

    from rq.job import Job

    slow, fast = vendor_key("slow"), vendor_key("fast")
    photo_server.serve("/coffee.jpg", photos["coffee"])
    env = worker_env(IMGPROC_WEBHOOK_TIMEOUT="3", IMGPROC_WEBHOOK_BACKOFF="1,1")
    pool = workers(env, "image-processing", n=2)
    wait_for(lambda: all(w.ready(redis_conn) for w in pool), 60, "2 image workers")

    def enqueue(headers, n: int, url: str, prefix: str) -> list[str]:
        body = {
            "image_url": photo_server.url("/coffee.jpg"),
            "options": {"resize": [32, 32]},
            "webhook_url": url,
        }
        return [
            client.post(LIGHT, json={**body, "record_id": f"{prefix}{i}"}, headers=headers).json["job_id"]
            for i in range(n)
        ]

    def finished(headers, ids) -> bool:
        return all(
            client.get(f"/api/image-queue/job/{j}", headers=headers).json["state"] == "finished" for j in ids
        )

    with Receiver(delay=10) as dead, Receiver() as receiver:  # dead: never answers within the 3 s
        slow_ids = enqueue(slow, 6, dead.url, "s")
        wait_for(lambda: finished(slow, slow_ids), 30, "the slow vendor's jobs")
        wait_for(lambda: len(dead.received) >= 1, 15, "the first attempt at the dead receiver")
        fast_ids = enqueue(fast, 3, receiver.url, "f")
        wait_for(lambda: len(receiver.received) == 3, 60, "the other vendor's 3 webhooks", interval=0.1)
        dead_attempts = len(dead.received)
    by_job = {json.loads(r["body"])["data"]["job_id"]: r["wall"] for r in receiver.received}
    latencies = sorted(
        by_job[j] - Job.fetch(j, connection=redis_conn).ended_at.replace(tzinfo=UTC).timestamp()
        for j in fast_ids
    )
    print(
        f"\nanother vendor's webhooks behind a receiver that times out (3 s): from its job's end "
        f"{', '.join(f'{s:.2f}' for s in latencies)} s; {dead_attempts} attempts at the dead one meanwhile"
    )
    # Before: the other vendor's webhooks waited behind all 6 of the dead receiver's first attempts.
    assert dead_attempts <= 3, dead_attempts
