"""Fair share: one vendor's big bulk does not starve another vendor's single job; weights share the starts."""

import io
import time
from contextlib import contextmanager

import pytest
from PIL import Image
from rq import Queue
from rq.job import Job

from imgproc.jobtypes import Payload
from imgproc.queueing import JobQueue, NewJob
from imgproc.queueing.fairshare import KEY_ACTIVE, KEY_READY
from imgproc.queueing.keys import KEY_PLAN_CAP, KEY_PLAN_WEIGHT
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


def test_lanes_left_by_the_turn_ordered_ready_set_are_fed_after_an_upgrade(settings, redis_conn):
    """Jobs waiting under 0.2's ready set (scored by jobs active, then turn) reach the workers in order."""
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=4))
    _, a = jobs.enqueue(specs("vendor-a", 3), batch=True)
    queue = Queue("image-processing", connection=redis_conn)
    redis_conn.delete(queue.key)
    for key in redis_conn.keys("imgproc:fair*"):  # as 0.2 left it: no virtual times, its own set
        redis_conn.delete(key)
    redis_conn.lpush("imgproc:lane:image-processing:vendor-a", a[1].id, a[0].id)
    redis_conn.delete("imgproc:active:vendor-a")
    redis_conn.zadd("imgproc:ready:image-processing", {"vendor-a": 2**40 + 7})
    redis_conn.set("imgproc:turn:image-processing", 7)
    assert jobs.fair.feed(queue) == 2
    assert queue.job_ids == [a[0].id, a[1].id]
    assert not redis_conn.exists("imgproc:ready:image-processing", "imgproc:turn:image-processing")


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
    assert jobs.fair.vendors("image-processing") == ["vendor-a"]
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


def play(jobs: JobQueue, redis_conn, starts: int) -> list[str]:
    """The vendors of the next ``starts`` jobs, a worker's loop played by hand: feed, take, finish."""
    queue = Queue("image-processing", connection=redis_conn)
    owners = []
    for _ in range(starts):
        jobs.fair.feed(queue)
        job = Job.fetch(redis_conn.lpop(queue.key).decode(), connection=redis_conn)
        job.set_status("finished")
        vendor = job.meta["vendor"]
        jobs.fair.release("image-processing", vendor, job.id)
        owners.append(vendor)
    return owners


@pytest.mark.parametrize("weights", [(2, 1), (1, 1), (3, 1)])
def test_each_vendor_gets_its_weight_of_the_starts(settings, redis_conn, weights):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=4))
    redis_conn.hset(KEY_PLAN_WEIGHT, mapping={"vendor-a": weights[0], "vendor-b": weights[1]})
    jobs.enqueue(specs("vendor-a", 300), batch=True)
    jobs.enqueue(specs("vendor-b", 300), batch=True)
    owners = play(jobs, redis_conn, 300)
    share = owners.count("vendor-a") / 300
    assert share == pytest.approx(weights[0] / sum(weights), abs=0.05 * weights[0] / sum(weights))
    # Interleaved all along, not in runs: no window of 30 starts leaves B out.
    assert all("vendor-b" in owners[i : i + 30] for i in range(0, 270))


def test_a_newcomer_goes_next_whatever_the_others_weight_and_backlog(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=4))
    redis_conn.hset(KEY_PLAN_WEIGHT, "vendor-a", 5)
    jobs.enqueue(specs("vendor-a", 100), batch=True)
    jobs.enqueue(specs("vendor-b", 100), batch=True)
    play(jobs, redis_conn, 60)
    jobs.enqueue(specs("vendor-c", 3), batch=True)
    queue = Queue("image-processing", connection=redis_conn)
    ahead = redis_conn.llen(queue.key)  # fed before C arrived: the queue's room, 2 at most
    owners = play(jobs, redis_conn, 20)
    at = [i for i, vendor in enumerate(owners) if vendor == "vendor-c"]
    assert at[0] <= ahead + 1, owners
    # Then no more than its share: one start in each round of 7 (weights 5, 1 and 1).
    assert [b - a for a, b in zip(at, at[1:], strict=False)] == [7, 7], owners


def test_a_vendor_alone_stays_within_its_cap_and_its_plan_sets_it(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=2))
    jobs.fair.room = 10  # room for more than any cap: only the cap holds jobs back
    queue = Queue("image-processing", connection=redis_conn)
    jobs.enqueue(specs("vendor-a", 10), batch=True)
    assert queue.count == 2  # the cap of IMGPROC_VENDOR_CONCURRENCY, though 8 more places are free
    redis_conn.hset(KEY_PLAN_CAP, "vendor-a", 5)  # its plan's max_running
    jobs.fair.feed(queue)
    assert queue.count == 5
    jobs.enqueue(specs("vendor-b", 3), batch=True)  # a vendor at its cap does not block the others
    assert queue.count == 7  # B's 2: its own cap
    redis_conn.hdel(KEY_PLAN_CAP, "vendor-a")
    for job_id in queue.job_ids[:5]:  # A's five end: it may have 2 again, not 5
        redis_conn.lrem(queue.key, 1, job_id)
        Job.fetch(job_id, connection=redis_conn).set_status("finished")
        jobs.fair.release("image-processing", "vendor-a", job_id)
    jobs.fair.feed(queue)
    owners = [Job.fetch(i, connection=redis_conn).meta["vendor"] for i in queue.job_ids]
    assert owners.count("vendor-a") == 2


def test_a_job_ending_in_one_queue_lets_its_vendor_go_on_in_another(settings, redis_conn):
    """The cap counts a vendor's jobs in all image queues: held in one, it goes on when one ends elsewhere."""
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=1))
    other = NewJob(Payload("vendor-a", "remove-bg", "r", {}, image_url="http://127.0.0.1:1/x.jpg"))
    _, (bg,) = jobs.enqueue([other])
    _, (light,) = jobs.enqueue(specs("vendor-a", 1))
    queue = Queue("image-processing", connection=redis_conn)
    assert queue.count == 0 and jobs.fair.waiting("image-processing") == 1  # at its cap of 1
    redis_conn.lpop(Queue("bg-removal", connection=redis_conn).key)
    bg.set_status("finished")
    jobs.fair.release("bg-removal", "vendor-a", bg.id)
    # Back among the ready at once, not only when a feed's re-count comes round to it.
    assert redis_conn.zscore(KEY_READY.format(queue="image-processing"), "vendor-a") is not None
    jobs.fair.feed(queue)
    assert queue.job_ids == [light.id]


def light_url(photo_server) -> str:
    """A small JPEG's URL: the jobs' time is the service's own work, not the photo's decoding."""
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 120, 40)).save(out, "JPEG")
    photo_server.serve("/light.jpg", out.getvalue())
    return photo_server.url("/light.jpg")


@contextmanager
def workers(settings, tmp_path, count: int, **env: str):
    """``count`` worker processes on image-processing; stopped (warm) when the block ends."""
    environ = process_env(settings, **env)
    names = [f"fair-{i}-{time.monotonic_ns()}" for i in range(count)]
    procs = [WorkerProcess.start(environ, "image-processing", n, tmp_path, new_session=True) for n in names]
    try:
        yield procs
    finally:
        assert stop_processes(procs, 30) == [0] * count


def wait_for(redis_conn, jobs: list[Job], done, procs, timeout: float = 180) -> None:
    """Poll the jobs' states until ``done(states)``; no job may fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with redis_conn.pipeline(transaction=False) as pipe:
            for job in jobs:
                pipe.hget(job.key, "status")
            states = [s.decode() for s in pipe.execute()]
        assert "failed" not in states, procs[0].log()[-3000:]
        if done(states):
            return
        time.sleep(0.2)
    raise AssertionError(f"not done in {timeout} s: {sorted(set(states))}")


def started(redis_conn, jobs: list[Job]) -> list[tuple[object, str]]:
    """(started_at, vendor) of each job that started, in order of start."""
    found = [Job.fetch(j.id, connection=redis_conn) for j in jobs]
    return sorted((j.started_at, j.meta["vendor"]) for j in found if j.started_at)


@pytest.mark.parametrize("weights", [(2, 1), (1, 1)])
def test_real_workers_start_each_vendor_by_its_weight(settings, redis_conn, photo_server, tmp_path, weights):
    """Two worker processes, two vendors with 300 light jobs each: the first 300 starts split by weight."""
    url = light_url(photo_server)
    settings = settings.replace(vendor_concurrency=4)  # 2 running + the queue's 2: no cap holds either back
    jobs = JobQueue(redis_conn, settings)
    redis_conn.hset(KEY_PLAN_WEIGHT, mapping={"vendor-a": weights[0], "vendor-b": weights[1]})
    everything = jobs.enqueue(specs("vendor-a", 300, url), batch=True)[1]
    everything += jobs.enqueue(specs("vendor-b", 300, url), batch=True)[1]
    begun = time.monotonic()
    with workers(settings, tmp_path, 2, IMGPROC_VENDOR_CONCURRENCY="4") as procs:
        finished = lambda states: states.count("finished") >= 300  # noqa: E731
        wait_for(redis_conn, everything, finished, procs)
    first = [vendor for _, vendor in started(redis_conn, everything)[:300]]
    share = first.count("vendor-a") / 300
    expected = weights[0] / sum(weights)
    print(
        f"weights {weights[0]}:{weights[1]}: vendor-a got {first.count('vendor-a')} of the first 300 starts "
        f"({share:.3f}, expected {expected:.3f}); {time.monotonic() - begun:.1f} s"
    )
    assert share == pytest.approx(expected, abs=0.05 * expected)


def test_real_workers_start_a_newcomers_job_within_a_couple_of_jobs(
    settings, redis_conn, photo_server, tmp_path
):
    """B's job, sent while A's bulk (weight 3) runs, starts after the 2 in the queue (and one taken then)."""
    url = light_url(photo_server)
    settings = settings.replace(vendor_concurrency=4)
    jobs = JobQueue(redis_conn, settings)
    redis_conn.hset(KEY_PLAN_WEIGHT, "vendor-a", 3)
    bulk = jobs.enqueue(specs("vendor-a", 120, url), batch=True)[1]
    with workers(settings, tmp_path, 2, IMGPROC_VENDOR_CONCURRENCY="4") as procs:
        wait_for(redis_conn, bulk, lambda states: states.count("finished") >= 30, procs)
        sent = time.time()
        _, (single,) = jobs.enqueue(specs("vendor-b", 1, url))
        wait_for(redis_conn, [single], lambda states: states == ["finished"], procs)
    single = Job.fetch(single.id, connection=redis_conn)
    between = [
        at for at, _ in started(redis_conn, bulk) if sent < at.timestamp() < single.started_at.timestamp()
    ]
    print(f"B's job started after {len(between)} of A's jobs started since it was sent")
    assert len(between) <= 3  # the 2 already in the queue, and one a worker took as B's was sent


def test_real_workers_keep_a_vendor_alone_within_its_plans_cap(settings, redis_conn, photo_server, tmp_path):
    """Three worker processes and one vendor whose plan caps it at 2: never 3 of its jobs at once."""
    url = light_url(photo_server)
    settings = settings.replace(vendor_concurrency=8)
    jobs = JobQueue(redis_conn, settings)
    redis_conn.hset(KEY_PLAN_CAP, "vendor-a", 2)
    bulk = jobs.enqueue(specs("vendor-a", 60, url), batch=True)[1]
    with workers(settings, tmp_path, 3, IMGPROC_VENDOR_CONCURRENCY="8") as procs:
        wait_for(redis_conn, bulk, lambda states: states.count("finished") == 60, procs)
    spans = [Job.fetch(j.id, connection=redis_conn) for j in bulk]
    edges = sorted([(j.started_at, 1) for j in spans] + [(j.ended_at, -1) for j in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most == 2
