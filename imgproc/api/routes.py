"""The ``/api/image-queue`` blueprint: enqueue, poll, batch, cancel or stop, and stats (API.md).

One view per route (flask's tutorial, ``blog.py``); the enqueue routes are
drawn from the job-type table, each single endpoint onto ``enqueue_single``
and each bulk one onto ``enqueue_bulk``, the job type in the view's arguments.
Requests are parsed by ``imgproc.api.requests``.
"""

from __future__ import annotations

import dataclasses

from flask import Blueprint, g, jsonify, request
from rq import Queue
from rq.job import JobStatus

from imgproc.errors import Conflict, Unauthorized
from imgproc.jobtypes import JOB_TYPES, QUEUE_WEBHOOKS, TASK_COMPLETE_BATCH
from imgproc.queueing import NewJob, batches, events
from imgproc.queueing.state import JobState

from . import sessions
from .operator import record
from .requests import parse_bulk, parse_single
from .services import Services, result_base, services

api = Blueprint("api", __name__, url_prefix="/api/image-queue")


def authenticate() -> None:
    """App-level hook, run before the limiter's: every /api/ request names its vendor by API key.

    Or, without the header, by a signed-in browser's session cookie (``sessions``: the web page).
    """
    if not request.path.startswith("/api/"):
        return
    key = request.headers.get("X-API-Key", "")
    vendor = services().vendors.authenticate(key) if key else sessions.cookie_vendor()
    if vendor is None:
        raise Unauthorized("missing or unknown X-API-Key")
    g.vendor = vendor


def enqueue_single(job_type: str):
    svc = services()
    single = parse_single(JOB_TYPES[job_type], g.vendor.name, svc.settings, svc.url_policy)
    key = single.idempotency_key
    if key is None:
        _, jobs = _enqueue(svc, [single.job])
        return jsonify(_accepted(jobs[0])), 202
    job_id, earlier = svc.jobs.claim(g.vendor.name, key)
    if earlier is not None:  # the same request again: the first job, nothing enqueued
        return jsonify({**_accepted(earlier), "state": svc.jobs.job_view(earlier)["state"]}), 200
    try:
        _, jobs = _enqueue(svc, [dataclasses.replace(single.job, job_id=job_id)])
    except Exception:
        svc.jobs.release(g.vendor.name, key)
        raise
    return jsonify(_accepted(jobs[0])), 202


def enqueue_bulk(job_type: str):
    svc = services()
    batch_id, jobs = _enqueue(
        svc, parse_bulk(JOB_TYPES[job_type], g.vendor.name, svc.settings, svc.url_policy), batch=True
    )
    return jsonify(
        {
            "batch_id": batch_id,
            "job_ids": [j.id for j in jobs],
            "status_url": f"/api/image-queue/batch/{batch_id}",
        }
    ), 202


for _jt in JOB_TYPES.values():
    defaults = {"job_type": _jt.name}
    api.add_url_rule(f"/{_jt.single_endpoint}", view_func=enqueue_single, methods=["POST"], defaults=defaults)
    api.add_url_rule(f"/{_jt.bulk_endpoint}", view_func=enqueue_bulk, methods=["POST"], defaults=defaults)


@api.get("/job/<job_id>")
def job_status(job_id: str):
    jobs = services().jobs
    return jsonify(
        jobs.job_view(jobs.job_for(g.vendor.name, job_id, operator=g.vendor.operator), result_base())
    )


@api.delete("/job/<job_id>")
def cancel(job_id: str):
    """Cancel a job that waits (200, canceled); stop one that runs (202, the stop on its way)."""
    svc = services()
    job = svc.jobs.job_for(g.vendor.name, job_id, operator=g.vendor.operator)
    status = job.get_status()
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        _audited("job.cancel", job)
        svc.jobs.cancel(job)
        job.refresh()
        view = svc.jobs.job_view(job)
        events.publish(svc.conn, view, events.STATE, svc.settings.failure_ttl)
        _cancelled_in_batch(svc, job)
        return jsonify(view)
    if status == JobStatus.STARTED:
        _audited("job.stop", job)
        if not svc.jobs.stop(job):
            raise Conflict("no worker heard the stop (the one running the job lost Redis or died); try again")
        job.refresh()  # still started, as a rule: the worker stops it at the end of its current stage
        return jsonify(svc.jobs.job_view(job, result_base())), 202
    raise Conflict(f"the job has already ended ({status.value if hasattr(status, 'value') else status})")


def _audited(action: str, job) -> None:
    """An operator's cancel or stop goes to the audit log first; a vendor's of its own job does not."""
    if g.vendor.operator:
        record(action, f"job:{job.id}", {"vendor": JobState.of(job).vendor})


@api.get("/batch/<batch_id>")
def batch_status(batch_id: str):
    return jsonify(services().jobs.batch_view(g.vendor.name, batch_id, operator=g.vendor.operator))


@api.get("/queue-stats")
def queue_stats():
    return jsonify(services().jobs.stats(g.vendor.name, operator=g.vendor.operator))


def _accepted(job) -> dict:
    return {"job_id": job.id, "state": "queued", "status_url": f"/api/image-queue/job/{job.id}"}


def _enqueue(svc: Services, new: list[NewJob], batch: bool = False):
    """Enqueue for the request's vendor, and count the jobs."""
    batch_id, jobs = svc.jobs.enqueue(new, batch=batch)
    job_type = new[0].payload.job_type
    svc.metrics.inc("imgproc_jobs_enqueued_total", len(jobs), queue=job_type.queue, type=job_type.name)
    return batch_id, jobs


def _cancelled_in_batch(svc: Services, job) -> None:
    """A cancelled job has ended: if it was its batch's last, the batch's completion is announced.

    By a webhook worker, through its function's name (the API never imports the worker).
    """
    batch_id = JobState.of(job).batch_id
    record = batches.batch(svc.conn, batch_id) if batch_id else None
    if not record or not record.get("webhook_url"):  # nobody to tell
        return
    if batches.mark_ended(svc.conn, batch_id, job.id, len(record["job_ids"]), svc.settings.failure_ttl):
        Queue(QUEUE_WEBHOOKS, connection=svc.conn).enqueue(
            TASK_COMPLETE_BATCH, batch_id, result_ttl=svc.settings.result_ttl
        )
