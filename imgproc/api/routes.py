"""The ``/api/image-queue`` blueprint: enqueue, poll, batch, cancel and stats (API.md)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, g, jsonify, request
from rq import Queue
from rq.job import JobStatus

from imgproc import identifiers
from imgproc.adapters.urls import check_url, check_webhook_url
from imgproc.errors import (
    Conflict,
    InvalidOptions,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    TooManyItems,
    Unauthorized,
    UnsupportedMediaType,
)
from imgproc.jobtypes import BULK_ENDPOINTS, JOB_TYPES, QUEUE_WEBHOOKS, SINGLE_ENDPOINTS, TASK_COMPLETE_BATCH
from imgproc.queueing import JobSpec, batches, events
from imgproc.queueing.state import JobState

from . import options as opts
from . import sessions
from .services import result_base, services

SINGLE_FIELDS = {"record_id", "image_url", "options", "webhook_url", "idempotency_key"}
BULK_FIELDS = {"items", "options", "webhook_url"}
ITEM_FIELDS = {"record_id", "image_url", "options"}


def request_fields() -> tuple[dict[str, Any], Any]:
    """An enqueue request's fields and its uploaded file (multipart), or its JSON object."""
    if request.mimetype == "application/json":
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # the parser recurses once per level: 100,000 '[' were a 500
            raise InvalidRequest("the JSON body is nested too deeply", details={"field": "body"}) from None
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return data, None
    if request.mimetype == "multipart/form-data":
        fields: dict[str, Any] = dict(request.form)
        if "options" in fields:
            try:
                fields["options"] = json.loads(fields["options"])
            except (ValueError, RecursionError):
                raise InvalidRequest(
                    "the options field must be a JSON object", details={"field": "options"}
                ) from None
        return fields, request.files.get("image")
    raise UnsupportedMediaType("send application/json, or multipart/form-data with an image file")


def _identifier(value: Any, field: str, longest: int, where: str = "") -> str:
    """A record id or idempotency key: 1 to ``longest`` characters, none of them a control character."""
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        raise InvalidRequest(f"{where}{field} must be a string of 1 to {longest} characters")
    problem = identifiers.problem(value)
    if problem:
        raise InvalidRequest(f"{where}{field} {problem}", details={"field": field})
    return value


def _record_id(value: Any, where: str = "") -> str:
    return _identifier(value, "record_id", 191, where)


def _unknown(fields: dict, allowed: set[str], where: str = "") -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidRequest(f"{where}unknown field {unknown[0]!r}")


def _accepted(job) -> dict:
    return {"job_id": job.id, "state": "queued", "status_url": f"/api/image-queue/job/{job.id}"}


def _enqueue(svc, specs: list[JobSpec], batch: bool = False):
    """Enqueue for the request's vendor, and count the jobs."""
    batch_id, jobs = svc.jobs.enqueue(g.vendor.name, specs, batch=batch)
    job_type = JOB_TYPES[specs[0].type]
    svc.metrics.inc("imgproc_jobs_enqueued_total", len(jobs), queue=job_type.queue, type=job_type.name)
    return batch_id, jobs


def _cancelled_in_batch(svc, job) -> None:
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


def build_blueprint() -> Blueprint:
    """The /api/image-queue routes (their per-vendor limits: ``ratelimits``)."""
    api = Blueprint("api", __name__, url_prefix="/api/image-queue")

    @api.post("/<endpoint>")
    def enqueue(endpoint: str):
        svc = services()
        if endpoint in SINGLE_ENDPOINTS:
            job_type = SINGLE_ENDPOINTS[endpoint].name
            fields, upload = request_fields()
            _unknown(fields, SINGLE_FIELDS)
            spec = JobSpec(
                job_type,
                _record_id(fields.get("record_id")),
                opts.validate(job_type, fields.get("options"), svc.settings),
            )
            if fields.get("webhook_url") is not None:
                spec.webhook_url = check_webhook_url(fields["webhook_url"], svc.url_policy)
            if upload is not None:
                data = upload.read(svc.settings.max_image_bytes + 1)
                if len(data) > svc.settings.max_image_bytes:
                    raise PayloadTooLarge(f"the image is over {svc.settings.max_image_bytes} bytes")
                spec.upload = data
            elif isinstance(fields.get("image_url"), str):
                spec.image_url = check_url(fields["image_url"])
            else:
                raise InvalidRequest("give image_url, or upload the image as the multipart file 'image'")
            key = fields.get("idempotency_key")
            if key is None:
                _, jobs = _enqueue(svc, [spec])
                return jsonify(_accepted(jobs[0])), 202
            _identifier(key, "idempotency_key", 255)
            spec.job_id, earlier = svc.jobs.claim(g.vendor.name, key)
            if earlier is not None:  # the same request again: the first job, nothing enqueued
                return jsonify({**_accepted(earlier), "state": svc.jobs.job_view(earlier)["state"]}), 200
            try:
                _, jobs = _enqueue(svc, [spec])
            except Exception:
                svc.jobs.release(g.vendor.name, key)
                raise
            return jsonify(_accepted(jobs[0])), 202
        if endpoint in BULK_ENDPOINTS:
            job_type = BULK_ENDPOINTS[endpoint].name
            fields, _ = request_fields()
            _unknown(fields, BULK_FIELDS)
            items = fields.get("items")
            if not isinstance(items, list) or not items:
                raise InvalidRequest("items must be a non-empty list")
            if len(items) > svc.settings.max_bulk_items:
                raise TooManyItems(f"{len(items)} items, at most {svc.settings.max_bulk_items} per request")
            defaults = fields.get("options") or {}
            if not isinstance(defaults, dict):
                raise InvalidRequest("options must be a JSON object")
            webhook_url = fields.get("webhook_url")
            if webhook_url is not None:
                webhook_url = check_webhook_url(webhook_url, svc.url_policy)
            specs = []
            for i, item in enumerate(items):  # all-or-nothing: every item is checked before any is enqueued
                where = f"items[{i}]: "
                if not isinstance(item, dict):
                    raise InvalidRequest(f"{where}each item must be a JSON object")
                _unknown(item, ITEM_FIELDS, where)
                item_options = item.get("options") or {}
                if not isinstance(item_options, dict):
                    raise InvalidRequest(f"{where}options must be a JSON object")
                try:
                    validated = opts.validate(job_type, {**defaults, **item_options}, svc.settings)
                except InvalidOptions as exc:
                    exc.details["item"] = i
                    exc.message = where + exc.message
                    raise
                if not isinstance(item.get("image_url"), str):
                    raise InvalidRequest(f"{where}image_url is required")
                specs.append(
                    JobSpec(
                        job_type,
                        _record_id(item.get("record_id"), where),
                        validated,
                        image_url=check_url(item["image_url"]),
                        webhook_url=webhook_url,
                    )
                )
            batch_id, jobs = _enqueue(svc, specs, batch=True)
            return jsonify(
                {
                    "batch_id": batch_id,
                    "job_ids": [j.id for j in jobs],
                    "status_url": f"/api/image-queue/batch/{batch_id}",
                }
            ), 202
        raise NotFound(f"no endpoint {endpoint!r}")

    @api.get("/job/<job_id>")
    def job_status(job_id: str):
        jobs = services().jobs
        return jsonify(
            jobs.job_view(jobs.job_for(g.vendor.name, job_id, operator=g.vendor.operator), result_base())
        )

    @api.delete("/job/<job_id>")
    def cancel(job_id: str):
        jobs = services().jobs
        job = jobs.job_for(g.vendor.name, job_id, operator=g.vendor.operator)
        status = job.get_status()
        if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            jobs.cancel(job)
            job.refresh()
            view = jobs.job_view(job)
            svc = services()
            events.publish(svc.conn, view, events.STATE, svc.settings.failure_ttl)
            _cancelled_in_batch(svc, job)
            return jsonify(view)
        if status == JobStatus.STARTED:
            raise Conflict("the job is running on a worker and cannot be stopped safely; it will finish")
        raise Conflict(f"the job has already ended ({status.value if hasattr(status, 'value') else status})")

    @api.get("/batch/<batch_id>")
    def batch_status(batch_id: str):
        return jsonify(services().jobs.batch_view(g.vendor.name, batch_id, operator=g.vendor.operator))

    @api.get("/queue-stats")
    def queue_stats():
        return jsonify(services().jobs.stats(g.vendor.name, operator=g.vendor.operator))

    return api
