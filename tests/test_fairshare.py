"""Fair share: one vendor's big bulk does not starve another vendor's single job."""

import time

from rq import Queue
from rq.job import Job

from imgproc.jobtypes import Payload
from imgproc.queueing import JobQueue, NewJob
from imgproc.queueing.fairshare import KEY_ACTIVE
from imgproc.testing import WorkerProcess, stop_processes
from tests.conftest import process_env

LIGHT = {"resize": [64, 64], "fit": "contain", "format": "jpg", "quality": 85, "strip_metadata": True}


def specs(vendor, n, url="http://127.0.0.1:1/x.jpg"):
    return [NewJob(Payload(vendor, "process-image", f"r{i}", dict(LIGHT), image_url=url)) for i in range(n)]


def test_feed_takes_vendors_in_turn_within_their_cap(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=2))
    _, a = jobs.enqueue(specs("vendor-a", 10), batch=True)
    _, b = jobs.enqueue(specs("vendor-b", 1), batch=True)
    queue = Queue("image-processing", connection=redis_conn)
    assert queue.job_ids == [a[0].id, a[1].id]  # A's cap is reached; B waits for room
    # Jobs waiting in the lanes count as queued: the whole queue for an operator, its own for a vendor.
    assert jobs.stats("", operator=True)["queues"]["image-processing"]["queued"] == 11
    assert jobs.stats("vendor-a")["queues"]["image-processing"]["queued"] == 10
    redis_conn.lpop(queue.key)  # a worker takes A's first job ...
    a[0].set_status("finished")  # ... and finishes it
    jobs.fair.release("image-processing", "vendor-a", a[0].id)  # as the worker does after each job
    jobs.fair.feed(queue)
    assert queue.job_ids == [a[1].id, b[0].id]  # B's turn comes before A's third job
    assert redis_conn.smembers(KEY_ACTIVE.format(vendor="vendor-a")) == {a[1].id.encode()}


def test_a_lost_job_end_holds_its_vendor_back_only_until_it_is_counted_again(settings, redis_conn):
    """A worker killed mid-job never releases it: the feed's own count of the vendor's jobs finds it."""
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=1))
    queue = Queue("image-processing", connection=redis_conn)
    _, a = jobs.enqueue(specs("vendor-a", 2), batch=True)
    _, b = jobs.enqueue(specs("vendor-b", 3), batch=True)
    _, c = jobs.enqueue(specs("vendor-c", 3), batch=True)
    assert queue.job_ids == [a[0].id, b[0].id]
    for job in (a[0], b[0]):
        redis_conn.lpop(queue.key)
        job.set_status("failed")  # no release: their worker was killed
    jobs.fair.release("image-processing", "vendor-b", b[0].id)  # b's end was told, a's was not
    fed = []
    for _ in range(4):
        jobs.fair.feed(queue)
        fed.append(redis_conn.lpop(queue.key).decode())
        Job.fetch(fed[-1], connection=redis_conn).set_status("finished")
        vendor = Job.fetch(fed[-1], connection=redis_conn).meta["vendor"]
        jobs.fair.release("image-processing", vendor, fed[-1])
    owners = [Job.fetch(i, connection=redis_conn).meta["vendor"] for i in fed]
    # Each vendor gets a turn before any gets a second: a's stale count held it back one turn at most.
    assert sorted(owners[:3]) == ["vendor-a", "vendor-b", "vendor-c"], owners


def test_lanes_left_by_the_old_ring_are_fed_after_an_upgrade(settings, redis_conn):
    """Jobs waiting in lanes under 0.1's turn ring (a list and a set) still reach the workers."""
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=1))
    _, a = jobs.enqueue(specs("vendor-a", 2), batch=True)
    queue = Queue("image-processing", connection=redis_conn)
    assert queue.job_ids == [a[0].id]
    # As 0.1 left it: vendor-a's second job in its lane, the vendor in the ring, no ready set.
    redis_conn.delete("imgproc:ready:image-processing")
    redis_conn.rpush("imgproc:ring:image-processing", "vendor-a")
    redis_conn.sadd("imgproc:ring-set:image-processing", "vendor-a")
    redis_conn.lpop(queue.key)
    a[0].set_status("finished")
    assert jobs.fair.feed(queue) == 1
    assert queue.job_ids == [a[1].id]
    assert not redis_conn.exists("imgproc:ring:image-processing", "imgproc:ring-set:image-processing")


def test_cancelled_waiting_job_never_reaches_a_worker(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=1))
    _, a = jobs.enqueue(specs("vendor-a", 3), batch=True)
    a[1].cancel()
    queue = Queue("image-processing", connection=redis_conn)
    redis_conn.lpop(queue.key)
    a[0].set_status("finished")
    jobs.fair.feed(queue)
    assert queue.job_ids == [a[2].id]


def test_a_job_cancelled_in_its_lane_stops_counting_as_queued_at_once(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=1))
    _, a = jobs.enqueue(specs("vendor-a", 3), batch=True)
    _, (b,) = jobs.enqueue(specs("vendor-b", 1))

    def queued() -> int:
        return jobs.stats("", operator=True)["queues"]["image-processing"]["queued"]

    assert queued() == 4
    jobs.cancel(a[2])  # still in vendor-a's lane
    assert queued() == 3 and jobs.fair.waiting("image-processing") == 1
    jobs.cancel(b)  # already fed into the RQ queue (vendor-b had room): rq takes it out there
    assert queued() == 2 and jobs.fair.waiting("image-processing") == 1
    assert redis_conn.zrange("imgproc:ready:image-processing", 0, -1) == [b"vendor-a"]
    assert jobs.stats("vendor-a")["vendors"]["vendor-a"]["canceled"] == 1


def test_single_job_starts_before_the_bulks_twentieth(settings, redis_conn, photo_server, photos, tmp_path):
    """Vendor A enqueues 40 light jobs, then B one; with 2 worker processes B starts early."""
    photo_server.serve("/coffee.jpg", photos["coffee"])
    url = photo_server.url("/coffee.jpg")
    jobs = JobQueue(redis_conn, settings)
    _, bulk = jobs.enqueue(specs("vendor-a", 40, url), batch=True)
    _, (single,) = jobs.enqueue(specs("vendor-b", 1, url))
    env = process_env(settings, IMGPROC_WORKERS_PER_HOST="2")
    names = [f"fair-{i}-{time.monotonic_ns()}" for i in range(2)]
    workers = [  # each a group of its own: a kill takes its scheduler with it
        WorkerProcess.start(env, "image-processing", name, tmp_path, new_session=True) for name in names
    ]
    try:
        deadline = time.monotonic() + 120
        everything = [*bulk, single]
        while time.monotonic() < deadline:
            states = [j.get_status(refresh=True) for j in everything]
            if all(s == "finished" for s in states):
                break
            assert not any(s == "failed" for s in states), workers[0].log()
            time.sleep(0.2)
        else:
            raise AssertionError(f"not finished: {states}")
    finally:
        codes = stop_processes(workers, 30)  # SIGTERM: a warm shutdown; killed after 30 s
    assert codes == [0, 0]
    starts = sorted(Job.fetch(j.id, connection=redis_conn).started_at for j in bulk)
    single_start = Job.fetch(single.id, connection=redis_conn).started_at
    assert single_start < starts[19]
    position = sum(1 for s in starts if s < single_start)
    print(
        f"B's job started after {position} of A's 40 jobs; "
        f"all 41 done in {(max(starts) - min(starts)).total_seconds():.2f} s"
    )
    assert position <= 4, f"B's job started after {position} of A's"
