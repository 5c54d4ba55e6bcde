"""A worker killed mid-job loses nothing; a worker stopped with SIGTERM finishes its job first."""

import signal
import time

from rq.job import Job
from rq.worker import Worker

from tests.faults.conftest import wait_for

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
    victim.signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL

    wait_for(lambda: poll()["state"] != "started", 60, "the abandoned job to be noticed", interval=0.2)
    detected = time.monotonic() - killed_at
    job = wait_for(
        lambda: (j := poll())["state"] in ("finished", "failed") and j, 120, "the retry", interval=0.2
    )
    recovered = time.monotonic() - killed_at
    print(
        f"\nkilled worker's job: abandoned after {detected:.1f} s, finished {recovered:.1f} s after the kill"
    )
    assert job["state"] == "finished", (job, survivor.log())
    assert job["attempts"] == 2
    assert Job.fetch(job_id, connection=redis_conn).worker_name == survivor.name
    assert detected < 15  # three missed heartbeats (3 s) plus a sweep (every 2 s), with room for a busy CI
    row = runtime.records.get("acme", "killed")
    assert row["writes"] == 1 and row["bg_removed_url"] == job["result"]["url"]
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
    worker.signal(signal.SIGTERM)  # what `docker stop` and `make run-workers` send
    assert worker.wait(60) == 0, worker.log()
    assert poll(first)["state"] == "finished"
    assert poll(second)["state"] == "queued"  # not taken after the stop was asked
    assert Worker.count(connection=redis_conn) == 0  # unregistered: /health counts it no more


def test_make_run_workers_recycles_a_worker_after_max_jobs(
    settings, worker_env, redis_conn, photo_server, photos, tmp_path
):
    """`imgproc workers N` (what `make run-workers` runs) replaces a worker that left after its N jobs."""
    import subprocess
    import sys

    from imgproc.config import ROOT
    from imgproc.queueing import JobQueue, JobSpec

    photo_server.serve("/coffee.jpg", photos["coffee"])
    options = {"resize": [32, 32], "fit": "contain", "format": "jpg", "quality": 80, "strip_metadata": True}
    _, jobs = JobQueue(redis_conn, settings).enqueue(
        "acme",
        [
            JobSpec("process-image", f"r{i}", options, image_url=photo_server.url("/coffee.jpg"))
            for i in range(7)
        ],
    )
    log = open(tmp_path / "pool.log", "w")
    pool = subprocess.Popen(
        [sys.executable, "-m", "imgproc.tools.cli", "workers", "1", "--queues", "image-processing"],
        cwd=ROOT,
        env=worker_env(IMGPROC_WORKER_MAX_JOBS="3"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: all(j.get_status(refresh=True) == "finished" for j in jobs), 90, "7 jobs", interval=0.2
        )
    finally:
        pool.send_signal(signal.SIGTERM)
        code = pool.wait(timeout=30)
        log.close()
    names = {Job.fetch(j.id, connection=redis_conn).worker_name for j in jobs}
    assert len(names) == 3, (tmp_path / "pool.log").read_text()  # 3 + 3 + 1 jobs
    assert code == 0
