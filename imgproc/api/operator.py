"""The operator's routes (an operator's key or session; 403 for a vendor's): failures, workers, usage.

GET  /api/image-queue/failed?vendor=&queue=       failed jobs of every vendor, newest first
POST /api/image-queue/failed/retry                requeue every failed job (of a vendor, a queue)
GET  /api/image-queue/workers                     the worker processes: host, pid, queues, current job
GET  /api/image-queue/usage?days=7                per vendor and UTC day: jobs, megapixels, limits hit
GET  /api/image-queue/webhooks/failed             webhook messages not delivered, with their last error
POST /api/image-queue/webhooks/<id>/redeliver     a failed message again (same webhook-id; 409 if delivered)
GET  /api/image-queue/audit?action=&target=&limit=   the audit log, newest first

Every action here is written to the audit log first (``record``): an action the log cannot take is
refused (503) rather than taken unrecorded.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from imgproc.adapters.audit import Actor, Audit
from imgproc.adapters.webhooks import WebhookStore
from imgproc.errors import Conflict, Forbidden, InvalidRequest, NotFound
from imgproc.jobtypes import QUEUES
from imgproc.queueing import listing, usage
from imgproc.queueing.deliveries import enqueue_delivery
from imgproc.queueing.retries import failed_jobs, retry_failed

from .services import services

#: Most failed jobs in one answer.
MAX_FAILED = 200
WEBHOOK_FIELDS = (
    "id",
    "vendor",
    "type",
    "job_id",
    "batch_id",
    "url",
    "attempts",
    "last_status",
    "last_error",
)


bp = Blueprint("operator", __name__, url_prefix="/api/image-queue")


def _filters() -> dict[str, str | None]:
    queue = request.args.get("queue") or None
    if queue is not None and queue not in QUEUES:
        raise InvalidRequest(f"no queue {queue!r} (known: {', '.join(QUEUES)})")
    return {"queue": queue, "vendor": request.args.get("vendor") or None}


def _webhooks() -> WebhookStore:
    svc = services()
    return WebhookStore(svc.engine, grace=svc.settings.webhook_secret_grace)


def record(action: str, target: str, details: dict | None = None) -> None:
    """Write an operator's action to the audit log: who (the operator key's vendor), from where."""
    Audit(services().engine).record(
        Actor.of_vendor(g.vendor.name, request.remote_addr), action, target, details
    )


@bp.before_request
def operators_only() -> None:
    if not g.vendor.operator:
        raise Forbidden("this route needs an operator's key")


@bp.get("/failed")
def failed():
    found = failed_jobs(services().jobs, **_filters())
    return jsonify({"jobs": found[:MAX_FAILED], "total": len(found)})


@bp.post("/failed/retry")
def retry_all():
    filters = _filters()
    record("jobs.retry", "filter:failed", {k: v for k, v in filters.items() if v})
    requeued, refused = retry_failed(services().jobs, **filters)
    return jsonify({"retried": [job.id for job in requeued], "refused": refused})


@bp.get("/workers")
def workers():
    return jsonify({"workers": listing.workers(services().jobs)})


@bp.get("/usage")
def usage_days():
    try:
        count = max(1, min(int(request.args.get("days", 7)), usage.KEEP_DAYS))
    except ValueError:
        raise InvalidRequest("days must be a whole number") from None
    return jsonify({"days": usage.days(services().conn, count)})


@bp.get("/webhooks/failed")
def webhooks_failed():
    messages = _webhooks().failed(vendor=request.args.get("vendor") or None)
    shown = [
        {
            **{f: m[f] for f in WEBHOOK_FIELDS},
            "updated_at": m["updated_at"].isoformat(timespec="seconds") + "Z",
        }
        for m in messages[:MAX_FAILED]
    ]
    # What still waits to be delivered, beside what failed (the page says which).
    return jsonify({"webhooks": shown, "total": len(messages), "waiting": services().jobs.webhook_backlog()})


@bp.post("/webhooks/<message_id>/redeliver")
def redeliver(message_id: str):
    store, svc = _webhooks(), services()
    record("webhook.redeliver", f"webhook:{message_id}")
    message, refused = store.redeliver(message_id)
    if message is None:
        raise NotFound(refused)
    if refused:
        raise Conflict(refused)
    enqueue_delivery(svc.conn, svc.settings, message_id, message["vendor"])
    return jsonify({"id": message_id, "state": "pending", "url": message["url"]}), 202


@bp.get("/audit")
def audit():
    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise InvalidRequest("limit must be a whole number") from None
    entries = Audit(services().engine).entries(
        limit, action=request.args.get("action") or None, target=request.args.get("target") or None
    )
    return jsonify({"entries": entries})
