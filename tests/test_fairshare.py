"""Fair share: one vendor's big bulk does not starve another vendor's single job."""

import subprocess
import sys
import time

from rq import Queue
from rq.job import Job

from imgproc.config import ROOT
from imgproc.queueing import JobQueue, JobSpec
from imgproc.queueing.fairshare import KEY_ACTIVE
from tests.conftest import process_env

LIGHT = {"resize": [64, 64], "fit": "contain", "format": "jpg", "quality": 85, "strip_metadata": True}


def specs(n, url="http://127.0.0.1:1/x.jpg"):
    return [JobSpec("process-image", f"r{i}", dict(LIGHT), image_url=url) for i in range(n)]


def test_feed_takes_vendors_in_turn_within_their_cap(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=2))
    _, a = jobs.enqueue("vendor-a", specs(10), batch=True)
    _, b = jobs.enqueue("vendor-b", specs(1), batch=True)
    queue = Queue("image-processing", connection=redis_conn)
    assert queue.job_ids == [a[0].id, a[1].id]  # A's cap is reached; B waits for room
    # Jobs waiting in the lanes count as queued: the whole queue for an operator, its own for a vendor.
    assert jobs.stats("", operator=True)["queues"]["image-processing"]["queued"] == 11
    assert jobs.stats("vendor-a")["queues"]["image-processing"]["queued"] == 10
    redis_conn.lpop(queue.key)  # a worker takes A's first job ...
    a[0].set_status("finished")  # ... and finishes it
    jobs.fair.feed(queue)
    assert queue.job_ids == [a[1].id, b[0].id]  # B's turn comes before A's third job
    assert redis_conn.smembers(KEY_ACTIVE.format(vendor="vendor-a")) == {a[1].id.encode()}


def test_cancelled_waiting_job_never_reaches_a_worker(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=1))
    _, a = jobs.enqueue("vendor-a", specs(3), batch=True)
    a[1].cancel()
    queue = Queue("image-processing", connection=redis_conn)
    redis_conn.lpop(queue.key)
    a[0].set_status("finished")
    jobs.fair.feed(queue)
    assert queue.job_ids == [a[2].id]


def test_a_job_cancelled_in_its_lane_stops_counting_as_queued_at_once(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=1))
    _, a = jobs.enqueue("vendor-a", specs(3), batch=True)
    _, (b,) = jobs.enqueue("vendor-b", specs(1))

    def queued() -> int:
        return jobs.stats("", operator=True)["queues"]["image-processing"]["queued"]

    assert queued() == 4
    jobs.cancel(a[2])  # still in vendor-a's lane
    assert queued() == 3 and jobs.fair.waiting("image-processing") == 1
    jobs.cancel(b)  # already fed into the RQ queue (vendor-b had room): rq takes it out there
    assert queued() == 2 and jobs.fair.waiting("image-processing") == 1
    assert redis_conn.smembers("imgproc:ring-set:image-processing") == {b"vendor-a"}
    assert jobs.stats("vendor-a")["vendors"]["vendor-a"]["canceled"] == 1


def test_single_job_starts_before_the_bulks_twentieth(settings, redis_conn, photo_server, photos, tmp_path):
    """Vendor A enqueues 40 light jobs, then B one; with 2 worker processes B starts early."""
    photo_server.serve("/coffee.jpg", photos["coffee"])
    url = photo_server.url("/coffee.jpg")
    jobs = JobQueue(redis_conn, settings)
    _, bulk = jobs.enqueue("vendor-a", specs(40, url), batch=True)
    _, (single,) = jobs.enqueue("vendor-b", specs(1, url))
    env = process_env(settings, IMGPROC_WORKERS_PER_HOST="2")
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "worker.py", "--queues", "image-processing"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    try:
        deadline = time.monotonic() + 120
        everything = [*bulk, single]
        while time.monotonic() < deadline:
            states = [j.get_status(refresh=True) for j in everything]
            if all(s == "finished" for s in states):
                break
            assert not any(s == "failed" for s in states), (tmp_path / "worker0.log").read_text()
            time.sleep(0.2)
        else:
            raise AssertionError(f"not finished: {states}")
    finally:
        for worker in workers:
            worker.terminate()
        for worker, log in zip(workers, logs, strict=True):
            assert worker.wait(timeout=30) == 0  # SIGTERM: a warm shutdown
            log.close()
    starts = sorted(Job.fetch(j.id, connection=redis_conn).started_at for j in bulk)
    single_start = Job.fetch(single.id, connection=redis_conn).started_at
    assert single_start < starts[19]
    position = sum(1 for s in starts if s < single_start)
    print(
        f"B's job started after {position} of A's 40 jobs; "
        f"all 41 done in {(max(starts) - min(starts)).total_seconds():.2f} s"
    )
    assert position <= 4, f"B's job started after {position} of A's"
