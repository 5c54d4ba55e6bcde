"""A worker killed mid-job loses nothing; a worker stopped with SIGTERM finishes its job first."""

import signal
import time

from rq.job import Job
from rq.worker import Worker

from imgproc.testing import stop_processes, wait_for
from tests.faults.conftest import STOP_GRACE

BG = "/api/image-queue/remove-bg-queue"


def enqueue(client, headers, photo_server, photos, record_id):
    photo_server.serve("/astronaut.jpg", photos["astronaut"])
    response = client.post(
        BG, json={"record_id": record_id, "image_url": photo_server.url("/astronaut.jpg")}, headers=headers
    )
    assert response.status_code == 202
    return response.json["job_id"]


def test_worker_killed_during_inference(
    client, vendor_key, photo_server, photos, redis_conn, runtime, worker_env, workers
):
    acme = vendor_key("acme")
    pool = workers(worker_env(), "bg-removal", n=2)
    wait_for(lambda: all(w.ready(redis_conn) for w in pool), 90, "2 workers to load ISNet")
    job_id = enqueue(client, acme, photo_server, photos, "killed")
    poll = lambda: client.get(f"/api/image-queue/job/{job_id}", headers=acme).json  # noqa: E731
    wait_for(lambda: poll()["stage"] == "inference", 60, "the job to reach inference")
    running = Job.fetch(job_id, connection=redis_conn).worker_name
    victim = next(w for w in pool if w.name == running)
    survivor = next(w for w in pool if w is not victim)
    killed_at = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL

    # Found abandoned, it is queued again at once and taken by the survivor (its "queued" may last
    # less than a poll): the survivor's name on the job marks the second attempt's start.
    wait_for(
        lambda: Job.fetch(job_id, connection=redis_conn).worker_name == survivor.name,
        60,
        "the abandoned job to start again",
        interval=0.2,
    )
    detected = time.monotonic() - killed_at
    job = wait_for(
        lambda: (j := poll())["state"] in ("finished", "failed") and j, 120, "the retry", interval=0.2
    )
    recovered = time.monotonic() - killed_at
    print(f"\nkilled worker's job: started again {detected:.1f} s, finished {recovered:.1f} s after the kill")
    assert job["state"] == "finished", (job, survivor.log())
    assert job["attempts"] == 2
    assert Job.fetch(job_id, connection=redis_conn).worker_name == survivor.name
    assert detected < 30  # three missed heartbeats (3 s) plus a look (every 1 s), with room for a busy CI
    row = runtime.records.get("acme", "killed")
    # The row holds the URL relative to the API (no IMGPROC_PUBLIC_URL set), the poll its absolute form.
    assert row["writes"] == 1 and job["result"]["url"].endswith(row["bg_removed_url"])
    assert photo_server.hits["/astronaut.jpg"] == 2  # fetched by each attempt, processed to the end once


def test_sigterm_finishes_the_job_then_exits_cleanly(
    client, vendor_key, photo_server, photos, redis_conn, runtime, worker_env, workers
):
    acme = vendor_key("acme")
    (worker,) = workers(worker_env(), "bg-removal")
    wait_for(lambda: worker.ready(redis_conn), 90, "the worker to load ISNet")
    first = enqueue(client, acme, photo_server, photos, "first")
    second = enqueue(client, acme, photo_server, photos, "second")
    poll = lambda job_id: client.get(f"/api/image-queue/job/{job_id}", headers=acme).json  # noqa: E731
    wait_for(lambda: poll(first)["stage"] == "inference", 60, "the first job's inference")
    worker.send_signal(signal.SIGTERM)  # what `docker stop` and `make run-workers` send
    # The inference's own time depends on the host's load (5 to 10 s at load 5 on 2 cores): a wait
    # of its own, ended early if the worker exits. The stop after it has the grace period that
    # `docker stop` or Kubernetes would give it.
    wait_for(
        lambda: worker.poll() is not None or poll(first)["state"] != "started",
        180,
        "the first job to end after the stop",
        interval=0.2,
    )
    assert worker.wait(STOP_GRACE) == 0, worker.log()
    assert poll(first)["state"] == "finished"
    assert poll(second)["state"] == "queued"  # not taken after the stop was asked
    assert Worker.count(connection=redis_conn) == 0  # unregistered: /health counts it no more
    # Its scheduler's locks are free for the next worker (also when it was stopped while importing).
    assert not redis_conn.keys("rq:scheduler-lock:*")


def test_make_run_workers_recycles_a_worker_after_max_jobs(
    settings, worker_env, redis_conn, photo_server, photos, tmp_path
):
    """`imgproc workers N` (what `make run-workers` runs) replaces a worker that left after its N jobs."""
    import subprocess
    import sys

    from imgproc.config import ROOT
    from imgproc.jobtypes import Payload
    from imgproc.queueing import JobQueue, NewJob

    photo_server.serve("/coffee.jpg", photos["coffee"])
    options = {"resize": [32, 32], "fit": "contain", "format": "jpg", "quality": 80, "strip_metadata": True}
    url = photo_server.url("/coffee.jpg")
    _, jobs = JobQueue(redis_conn, settings).enqueue(
        [NewJob(Payload("acme", "process-image", f"r{i}", options, image_url=url)) for i in range(7)]
    )
    log = open(tmp_path / "pool.log", "w")
    pool = subprocess.Popen(
        [sys.executable, "-m", "imgproc.tools.cli", "workers", "1", "--queues", "image-processing"],
        cwd=ROOT,
        env=worker_env(IMGPROC_WORKER_MAX_JOBS="3"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a kill takes its workers with it
    )
    try:
        # Three worker starts on the way (imports: 5 to 25 s each at load 5 on 2 cores).
        wait_for(
            lambda: all(j.get_status(refresh=True) == "finished" for j in jobs), 240, "7 jobs", interval=0.2
        )
    finally:
        (code,) = stop_processes([pool], STOP_GRACE)  # the pool stops its workers, all at once
        log.close()
    names = {Job.fetch(j.id, connection=redis_conn).worker_name for j in jobs}
    assert len(names) == 3, (tmp_path / "pool.log").read_text()  # 3 + 3 + 1 jobs
    assert code == 0
