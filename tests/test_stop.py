"""Stopping a running job (``DELETE`` of a started job): a real worker process, mid-inference.

The worker is ``python worker.py`` (non-forking): rq's stop-job command reaches its pubsub thread, the
attempt's next stage raises ``JobStopped``, and the job ends ``stopped`` with nothing after the stop
done (no upload, no record, its webhook a ``job.failed`` saying ``stopped``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from rq.job import Job

from imgproc.adapters.audit import Audit
from imgproc.adapters.records import Records
from imgproc.queueing import JobQueue
from imgproc.testing import WorkerProcess, stop_processes, wait_for
from imgproc.worker.stages import JobStopped, Stages
from tests.conftest import process_env
from tests.webhook_receiver import Receiver

BG = "/api/image-queue/remove-bg-queue"
LIGHT = "/api/image-queue/process-image-queue"
#: A worker's start (models loaded, registered): 5 to 40 s on the 2 busy cores of this machine.
BOOT = 180


@pytest.fixture
def settings(settings):
    # One job of a vendor at a time: its next job starts only once the stopped one left its lane.
    return settings.replace(vendor_concurrency=1)


def _job(client, headers, job_id: str) -> dict:
    return client.get(f"/api/image-queue/job/{job_id}", headers=headers).json


def _worker(settings, redis_conn, tmp_path, queues: str, name: str, **env: str) -> WorkerProcess:
    """A ``python worker.py`` on the test's services, once registered (as ``name``, or its slots)."""
    worker = WorkerProcess.start(
        process_env(settings, IMGPROC_VENDOR_CONCURRENCY="1", **env), queues, name, tmp_path, new_session=True
    )
    try:
        wait_for(
            lambda: redis_conn.exists(f"rq:worker:{name}", f"rq:worker:{name}.slot0"), BOOT, name, [worker]
        )
    except BaseException:
        stop_processes([worker], 10)
        raise
    return worker


def test_a_job_stopped_mid_inference_ends_stopped_and_the_worker_takes_the_next(
    client, app, vendor_key, settings, redis_conn, photo_server, photos, tmp_path
):
    acme = vendor_key("acme")
    photo_server.serve("/coffee.jpg", photos["coffee"])
    url = photo_server.url("/coffee.jpg")
    with Receiver() as receiver:
        # The session's first inference is slower (its warm-up): one job before, so that the stop
        # meets an inference of the usual length.
        warm = client.post(BG, json={"record_id": "warm", "image_url": url}, headers=acme).json["job_id"]
        first, second = (
            client.post(
                BG, json={"record_id": rid, "image_url": url, "webhook_url": receiver.url}, headers=acme
            ).json["job_id"]
            for rid in ("stop-me", "next")
        )
        worker = _worker(settings, redis_conn, tmp_path, "bg-removal", f"stop-{os.getpid()}")
        try:
            # Saved as the inference starts (a forced save): the model runs for the next 2-3 s.
            wait_for(lambda: _job(client, acme, first)["stage"] == "inference", 120, "the inference")
            asked = time.monotonic()
            response = client.delete(f"/api/image-queue/job/{first}", headers=acme)
            answered = time.monotonic()
            assert response.status_code == 202, response.json
            assert response.json["state"] == "started" and response.json["job_id"] == first
            stopped = wait_for(
                lambda: _job(client, acme, first)["state"] in ("stopped", "finished"), 60, "end"
            )
            ended = time.monotonic()
            view = _job(client, acme, first)
            assert view["state"] == "stopped", view
            wait_for(lambda: _job(client, acme, second)["state"] == "finished", 120, "the next job", [worker])
            wait_for(lambda: len(receiver.received) >= 2, 60, "both webhooks", [worker])
            assert worker.poll() is None, "the worker stays up"
        finally:
            codes = stop_processes([worker], 60)
    assert stopped and codes == [0], worker.log()[-3000:]
    # Stopped where the stop found it: the inference finished, nothing after it ran.
    assert view["stage"] == "inference" and view["result"] is None
    assert not (Path(settings.storage_dir) / "acme" / first).exists(), "nothing uploaded"
    records = Records(app.extensions["imgproc"].engine)
    assert records.get("acme", "stop-me") is None and records.get("acme", "next")["processed"]
    # The same worker took the vendor's next job once the stopped one had left its lane.
    assert Job.fetch(second, connection=redis_conn).worker_name == worker.name
    assert not redis_conn.sismember("imgproc:active:acme", first)
    messages = {m["data"]["job_id"]: m for m in (json.loads(r["body"]) for r in receiver.received)}
    assert messages[first]["type"] == "job.failed" and messages[first]["data"]["state"] == "stopped"
    assert messages[second]["type"] == "job.finished"
    assert client.delete(f"/api/image-queue/job/{first}", headers=acme).status_code == 409  # ended
    assert not Audit(app.extensions["imgproc"].engine).entries(10, action="job.stop")  # a vendor's own
    whole = [_job(client, acme, j)["result"]["duration_ms"] / 1000 for j in (warm, second)]
    assert ended - asked < max(whole) + 5, "stopped within an inference's time, and a little"
    print(
        f"stop latency: DELETE answered in {1000 * (answered - asked):.0f} ms, job stopped "
        f"{ended - asked:.2f} s after it; a whole job took {whole[0]:.2f} s (warm-up) and "
        f"{whole[1]:.2f} s (load {os.getloadavg()[0]:.1f})"
    )


def test_an_operator_stops_any_vendors_job_and_the_audit_log_says_so(
    client, app, vendor_key, settings, redis_conn, photo_server, tmp_path
):
    acme, other = vendor_key("acme"), vendor_key("other")
    ops = vendor_key("ops", operator=True)
    # A photo that takes 3 s to arrive: the job is started, in its fetch, when the stop comes.
    photo_server.slow_drip("/slow.jpg", total_bytes=300, chunk=10, interval=0.1)
    job_id = client.post(
        LIGHT, json={"record_id": "slow", "image_url": photo_server.url("/slow.jpg")}, headers=acme
    ).json["job_id"]
    worker = _worker(
        settings, redis_conn, tmp_path, "image-processing", f"ops-{os.getpid()}", IMGPROC_BATCH="2"
    )
    try:
        wait_for(lambda: _job(client, acme, job_id)["state"] == "started", 60, "the start", [worker])
        assert client.delete(f"/api/image-queue/job/{job_id}", headers=other).status_code == 404
        response = client.delete(f"/api/image-queue/job/{job_id}", headers=ops)
        assert response.status_code == 202, response.json
        wait_for(lambda: _job(client, acme, job_id)["state"] != "started", 30, "the stop", [worker])
    finally:
        stop_processes([worker], 60)
    view = _job(client, acme, job_id)
    # The fetch ran to its end; the decode and everything after never ran.
    assert view["state"] == "stopped" and view["stage"] == "fetching", view
    (entry,) = Audit(app.extensions["imgproc"].engine).entries(10, action="job.stop")
    assert entry["target"] == f"job:{job_id}" and entry["details"] == {"vendor": "acme"}
    assert entry["who"] == "ops"


def test_a_stop_no_worker_hears_is_refused(client, vendor_key, settings, redis_conn):
    """A started job whose worker is gone: the stop reaches nobody, and the answer says so."""
    acme = vendor_key("acme")
    job_id = client.post(
        LIGHT, json={"record_id": "r", "image_url": "http://127.0.0.1:9/x.jpg"}, headers=acme
    ).json["job_id"]
    job = Job.fetch(job_id, connection=redis_conn)
    job.worker_name = "gone.1234"
    job.set_status("started")
    job.save()
    response = client.delete(f"/api/image-queue/job/{job_id}", headers=acme)
    assert response.status_code == 409 and "no worker heard" in response.json["error"]["message"]
    assert _job(client, acme, job_id)["state"] == "started"


def test_a_stop_takes_effect_at_the_next_stage_but_not_at_done(settings, redis_conn):
    from imgproc.jobtypes import JOB_TYPES, Payload
    from imgproc.queueing import NewJob

    jobs = JobQueue(redis_conn, settings)
    job_type = JOB_TYPES["process-image"]
    payload = Payload("acme", job_type.name, "r", {}, image_url="http://127.0.0.1:9/x.jpg")
    _, (job,) = jobs.enqueue([NewJob(payload)])
    stages = Stages(Job.fetch(job.id, connection=redis_conn), settings)
    stages.reach("fetching")
    stages.stop()
    with pytest.raises(JobStopped) as stopped:
        stages.reach("inference")
    assert stopped.value.code == "stopped" and not stopped.value.retryable
    assert stages.state.stage == "fetching"
    stages.reach("done")  # uploaded and saved by then: a stop that late lets the job finish
    assert stages.state.stage == "done"


def test_an_operators_cancel_is_audited_a_vendors_is_not(client, app, vendor_key):
    acme, ops = vendor_key("acme"), vendor_key("ops", operator=True)
    body = {"image_url": "http://127.0.0.1:9/x.jpg"}
    mine, theirs = (
        client.post(LIGHT, json={**body, "record_id": r}, headers=acme).json["job_id"] for r in ("a", "b")
    )
    assert client.delete(f"/api/image-queue/job/{mine}", headers=acme).json["state"] == "canceled"
    assert client.delete(f"/api/image-queue/job/{theirs}", headers=ops).json["state"] == "canceled"
    entries = Audit(app.extensions["imgproc"].engine).entries(10, action="job")
    assert [(e["action"], e["target"], e["who"]) for e in entries] == [("job.cancel", f"job:{theirs}", "ops")]
