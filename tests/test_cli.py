"""Operator commands: ``imgproc jobs failed``, ``jobs retry`` and ``queues`` on the real Redis."""

import re

import pytest
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from imgproc.jobtypes import Payload
from imgproc.queueing import JobQueue, NewJob
from imgproc.queueing.fairshare import KEY_LANE

LIGHT = {"resize": [64, 64], "fit": "contain", "format": "jpg", "quality": 85, "strip_metadata": True}


def rows(out: str) -> list[list[str]]:
    """The rows of a table the CLI printed (header first), split on its column gaps."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def enqueue(settings, redis_conn, vendor: str, url: str, *records: str) -> list[Job]:
    new = [NewJob(Payload(vendor, "process-image", record, dict(LIGHT), image_url=url)) for record in records]
    return JobQueue(redis_conn, settings).enqueue(new)[1]


@pytest.fixture
def failed(settings, redis_conn, photo_server, photos, work):
    """Three failed jobs (acme's a1, a2 and globex's g1: the URL serves text) and one finished job."""
    photo_server.serve("/photo.jpg", b"not an image")
    photo_server.serve("/good.jpg", photos["coffee"])
    url = photo_server.url("/photo.jpg")
    jobs = {
        job.meta["record_id"]: job
        for job in [
            *enqueue(settings, redis_conn, "acme", url, "a1", "a2"),
            *enqueue(settings, redis_conn, "globex", url, "g1"),
            *enqueue(settings, redis_conn, "acme", photo_server.url("/good.jpg"), "ok"),
        ]
    }
    work()
    assert jobs["ok"].get_status(refresh=True) == "finished"
    return jobs


def test_failed_lists_jobs_newest_first_with_their_error(cli, failed):
    code, out, _ = cli("jobs", "failed")
    assert code == 0
    header, *table = rows(out)
    assert header == [
        "job id",
        "queue",
        "vendor",
        "record",
        "type",
        "attempts",
        "error",
        "ended at",
        "message",
    ]
    assert sorted(row[3] for row in table) == ["a1", "a2", "g1"]  # not the finished job
    for row in table:
        job = failed[row[3]]
        assert row[:3] == [job.id, "image-processing", job.meta["vendor"]]
        assert row[4:7] == ["process-image", "1", "unsupported_image"]  # permanent: one attempt
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row[7]) and row[8]
    ended = [row[7] for row in table]
    assert ended == sorted(ended, reverse=True)

    code, out, _ = cli("jobs", "failed", "--vendor", "globex")
    assert [row[3] for row in rows(out)[1:]] == ["g1"]
    code, out, _ = cli("jobs", "failed", "--limit", "1")
    assert len(rows(out)) == 3 and "1 of 3 failed jobs shown" in out  # header, one job, the note
    code, out, _ = cli("jobs", "failed", "--queue", "bg-removal")
    assert code == 0 and out.strip() == "no failed jobs"


def test_a_failed_job_without_our_error_shows_internal(cli, settings, redis_conn):
    """A job rq failed itself (lost worker, timeout kill) has no meta error: code internal, as in the API."""
    (job,) = enqueue(settings, redis_conn, "acme", "https://example.com/a.jpg", "lost")
    with redis_conn.pipeline() as pipe:
        job.set_status("failed", pipeline=pipe)
        FailedJobRegistry(job.origin, connection=redis_conn).add(
            job, ttl=60, pipeline=pipe, exc_string="lost"
        )
        pipe.execute()
    code, out, _ = cli("jobs", "failed")
    assert code == 0
    (row,) = rows(out)[1:]
    assert row[0] == job.id and row[6] == "internal" and row[8] == "the job failed"


def test_retry_one_job_cleans_it_and_it_runs_again(cli, failed, photo_server, photos, redis_conn, work):
    job = failed["a1"]
    before = Job.fetch(job.id, connection=redis_conn)
    assert before.meta["error"]["code"] == "unsupported_image" and before.retries_left == 0
    photo_server.serve("/photo.jpg", photos["coffee"])  # the vendor fixed the photo

    code, out, err = cli("jobs", "retry", job.id)
    assert code == 0 and not err
    assert out.splitlines() == [f"requeued {job.id}  image-processing  acme/a1", "1 job requeued"]
    job = Job.fetch(job.id, connection=redis_conn)
    assert job.get_status() == "queued" and job.id in Queue("image-processing", connection=redis_conn).job_ids
    assert job.id not in FailedJobRegistry("image-processing", connection=redis_conn)
    assert "error" not in job.meta and "output" not in job.meta and job.meta["stage"] == "queued"
    assert job.meta["attempts"] == 1 and job.meta["progress"] == before.meta["progress"]
    assert job.meta["max_attempts"] == 1 + 3 and job.retries_left == 2  # a fresh set of attempts
    assert job.ended_at is None

    work()
    job = Job.fetch(job.id, connection=redis_conn)
    assert job.get_status() == "finished" and job.meta["attempts"] == 2 and job.meta["stage"] == "done"
    assert job.return_value()["record_id"] == "a1"
    code, out, _ = cli("jobs", "failed")
    assert sorted(row[3] for row in rows(out)[1:]) == ["a2", "g1"]


def test_retry_unknown_or_not_failed_ids_is_exit_1_and_the_others_are_requeued(cli, failed, redis_conn):
    code, out, err = cli("jobs", "retry", "no-such-job", failed["ok"].id, failed["g1"].id)
    assert code == 1
    assert out.splitlines() == [f"requeued {failed['g1'].id}  image-processing  globex/g1", "1 job requeued"]
    assert err.splitlines() == [
        "error: no job no-such-job",
        f"error: job {failed['ok'].id} is finished, not failed",
    ]
    assert failed["g1"].get_status(refresh=True) == "queued"
    code, _, err = cli("jobs", "retry", failed["g1"].id)  # already requeued
    assert code == 1 and "is queued, not failed" in err


def test_retry_all_failed_of_a_vendor_then_the_rest(cli, failed, redis_conn):
    code, out, _ = cli("jobs", "retry", "--all-failed", "--vendor", "acme")
    assert code == 0
    assert [line.split()[3] for line in out.splitlines()[:-1]] == ["acme/a1", "acme/a2"]  # oldest first
    assert out.splitlines()[-1] == "2 jobs requeued"
    assert failed["g1"].get_status(refresh=True) == "failed"
    code, out, _ = cli("jobs", "retry", "--all-failed")
    assert code == 0 and out.splitlines() == [
        f"requeued {failed['g1'].id}  image-processing  globex/g1",
        "1 job requeued",
    ]
    # Each in its vendor's lane, as an enqueue: two reach the RQ queue, globex's waits for room.
    assert Queue("image-processing", connection=redis_conn).job_ids == [failed[r].id for r in ("a1", "a2")]
    lane = KEY_LANE.format(queue="image-processing", vendor="globex")
    assert redis_conn.lrange(lane, 0, -1) == [failed["g1"].id.encode()]
    code, out, _ = cli("jobs", "retry", "--all-failed")
    assert code == 0 and out.strip() == "no failed jobs"


def test_retry_needs_ids_or_all_failed(cli, redis_conn):
    assert cli("jobs", "retry")[0] == 2
    assert cli("jobs", "retry", "abc", "--all-failed")[0] == 2
    assert cli("jobs", "retry", "abc", "--vendor", "acme")[0] == 2


def test_queues_counts_per_queue_and_per_vendor(cli, settings, redis_conn):
    enqueue(
        settings, redis_conn, "acme", "https://example.com/a.jpg", "r1", "r2", "r3"
    )  # 2 in the queue, 1 in a lane
    enqueue(settings, redis_conn, "globex", "https://example.com/b.jpg", "r4")
    code, out, _ = cli("queues")
    assert code == 0
    queues, vendors = out.split("\n\n")
    assert rows(queues) == [
        ["queue", "queued", "started", "scheduled", "deferred", "finished", "failed", "workers"],
        ["bg-removal", "0", "0", "0", "0", "0", "0", "0"],
        ["face-crop", "0", "0", "0", "0", "0", "0", "0"],
        ["image-processing", "4", "0", "0", "0", "0", "0", "0"],
    ]
    assert rows(vendors) == [
        ["vendor", "queued", "started", "scheduled", "deferred", "finished", "failed", "canceled", "stopped"],
        ["acme", "3", "0", "0", "0", "0", "0", "0", "0"],
        ["globex", "1", "0", "0", "0", "0", "0", "0", "0"],
    ]


def test_queues_with_nothing_enqueued(cli, redis_conn):
    code, out, _ = cli("queues")
    assert code == 0 and out.rstrip().endswith("no vendor has jobs")


def test_unreachable_redis_is_an_error_message(cli, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    code, out, err = cli("queues")
    assert code == 1 and not out and err.startswith("error: Redis is unreachable")


def test_output_into_a_closed_pipe_stops_quietly(settings, redis_conn):
    """``imgproc queues | head``: the reader went away; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    enqueue(settings, redis_conn, "acme", "http://127.0.0.1:9/x.jpg", "r1")
    read_end, write_end = os.pipe()
    os.close(read_end)  # like head after its lines: every write now fails with EPIPE
    env = dict(os.environ, REDIS_URL=settings.redis_url, IMGPROC_DATABASE_URL=settings.database_url)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "imgproc", "queues"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
        )
    finally:
        os.close(write_end)
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert proc.returncode == 141
