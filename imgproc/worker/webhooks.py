"""Signed webhooks (Standard Webhooks): announced when a job ends for good, delivered from their own queue.

``announce`` runs in the image worker right after a job has ended for good
(finished, or failed with no retry left): it writes the message (its body and
``webhook-id`` fixed from then on) and enqueues ``deliver`` on the
``webhooks`` queue, which only webhook workers serve, so that no image
worker ever waits for a receiver. When the last job of a bulk request ends,
one ``batch.completed`` message follows.

``deliver`` signs each attempt anew (``webhook-timestamp`` is the attempt's)
with the vendor's secret, and during a rotation with the previous one too;
its retries are rq's ``Retry`` with ``IMGPROC_WEBHOOK_BACKOFF``. rq's own
``Webhook`` is not used: it is unsigned, not retried, and sent inside the
worker that ran the job.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from typing import Any

import redis
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from standardwebhooks import Webhook

from imgproc.adapters.webhooks import DELIVERED, FAILED, PENDING
from imgproc.errors import PermanentError, TransientError
from imgproc.queueing import batches
from imgproc.queueing.deliveries import enqueue_delivery as enqueue_delivery  # also the CLI's
from imgproc.queueing.jobs import JobQueue
from imgproc.queueing.state import JobState
from imgproc.queueing.views import with_base

from . import runtime as runtimes

log = logging.getLogger("imgproc.webhooks")


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def announce(runtime: runtimes.Runtime, job: Job, view: dict[str, Any], webhook_url: str | None) -> None:
    """After a job ended for good: its message (if it named a webhook), its batch's (if it was the last)."""
    state = JobState.of(job)
    vendor = state.vendor
    if webhook_url:
        kind = "job.finished" if view["state"] == JobStatus.FINISHED else "job.failed"
        message_id = "msg_" + uuid.uuid4().hex
        # On the job before the delivery can start, so that the delivery's own update comes last.
        state.webhook = {"state": PENDING, "attempts": 0, "last_status": None, "id": message_id}
        job.save_meta()
        # A receiver has no API to resolve a relative URL against: IMGPROC_PUBLIC_URL when it is set.
        view = with_base({**view, "webhook": state.webhook}, runtime.settings.public_url)
        _message(runtime, message_id, vendor, kind, webhook_url, view, job_id=job.id)
    batch_id = state.batch_id
    if batch_id:
        record = batches.batch(runtime.conn, batch_id)
        total = len(record["job_ids"]) if record else 0
        if record and batches.mark_ended(runtime.conn, batch_id, job.id, total, runtime.settings.failure_ttl):
            complete_batch(batch_id)


def complete_batch(batch_id: str) -> None:
    """Job (or called by ``announce``): the ``batch.completed`` message of a batch whose jobs all ended.

    The API enqueues it by name when a cancel ends a batch's last job.
    """
    runtime = runtimes.current.get(None)
    if runtime is None:
        raise PermanentError("webhooks are announced only by imgproc workers", code="internal")
    record = batches.batch(runtime.conn, batch_id)
    if not record or not record.get("webhook_url"):
        return
    status = JobQueue(runtime.conn, runtime.settings).batch_view(record["vendor"], batch_id)
    message_id = "msg_" + uuid.uuid4().hex
    _message(
        runtime,
        message_id,
        record["vendor"],
        "batch.completed",
        record["webhook_url"],
        status,
        batch_id=batch_id,
    )


def _message(
    runtime: runtimes.Runtime,
    message_id: str,
    vendor: str,
    kind: str,
    url: str,
    data: dict[str, Any],
    *,
    job_id: str | None = None,
    batch_id: str | None = None,
) -> None:
    body = json.dumps({"type": kind, "timestamp": _iso_now(), "data": data}, separators=(",", ":"))
    runtime.webhooks.create(message_id, vendor, kind, url, body, job_id=job_id, batch_id=batch_id)
    enqueue_delivery(runtime.conn, runtime.settings, message_id, vendor)


def deliver(message_id: str) -> dict[str, Any]:
    """Job: one delivery attempt of a message; raises (and rq retries) unless it was delivered or refused."""
    runtime = runtimes.current.get(None)
    if runtime is None:
        raise PermanentError(
            "webhooks are delivered only by imgproc workers (python worker.py)", code="internal"
        )
    job = get_current_job()
    message = runtime.webhooks.get(message_id)
    if message is None:
        raise PermanentError(f"no webhook message {message_id}", code="internal")
    attempt = message["attempts"] + 1
    now = dt.datetime.now(dt.UTC)
    body = message["body"]
    signatures = [
        Webhook(secret).sign(message_id, now, body)
        for secret in runtime.webhooks.signing_secrets(message["vendor"])
    ]
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
    started = time.perf_counter()
    status, error, refused = None, None, False
    try:
        status = runtime.fetcher.post(
            message["url"], body.encode(), headers, runtime.settings.webhook_timeout
        )
    except PermanentError as exc:  # a refused address: another attempt would be refused too
        error, refused = f"{exc.code}: {exc.message}", True
    except TransientError as exc:  # unreachable, timed out
        error = f"{exc.code}: {exc.message}"
    latency_ms = round((time.perf_counter() - started) * 1000)
    retries_left = job.retries_left or 0
    if status is not None and 200 <= status < 300:
        state, outcome, next_try = DELIVERED, "delivered", None
    elif refused or status == 410 or retries_left <= 0:  # 410 Gone: the receiver asks us to stop
        state, outcome, next_try = FAILED, ("refused" if refused else "failed"), None
    else:
        intervals = job.retry_intervals or [0]
        delay = intervals[max(len(intervals) - retries_left, 0)]
        state, outcome, next_try = PENDING, "retried", now + dt.timedelta(seconds=delay)
    if status is not None and error is None and state != DELIVERED:
        error = f"HTTP {status}"
    runtime.webhooks.record_attempt(
        message_id,
        attempt=attempt,
        url=message["url"],
        state=state,
        status_code=status,
        error=error,
        latency_ms=latency_ms,
        next_try_at=next_try,
    )
    runtime.metrics.inc("imgproc_webhook_deliveries_total", outcome=outcome)
    _show_on_job(runtime, message, state, attempt, status)
    log.info(
        "webhook %s attempt %d: %s (%s, %d ms)", message_id, attempt, outcome, status or error, latency_ms
    )
    if state == DELIVERED:
        return {"message_id": message_id, "status": status, "attempts": attempt}
    if state == FAILED:
        raise PermanentError(f"webhook {message_id} not delivered: {error}", code="webhook_failed")
    raise TransientError(f"webhook {message_id} attempt {attempt}: {error}", code="webhook_failed")


def _show_on_job(
    runtime: runtimes.Runtime, message: dict, state: str, attempts: int, status: int | None
) -> None:
    """The delivery's state on the job it announces, for ``GET /job/<id>``."""
    if not message.get("job_id"):
        return
    job_id = message["job_id"]
    shown = {"state": state, "attempts": attempts, "last_status": status, "id": message["id"]}
    try:
        job = Job.fetch(job_id, connection=runtime.conn)
        JobState.of(job).webhook = shown
        job.save_meta()
    except (NoSuchJobError, ValueError):  # expired meanwhile (rq's ValueError: a malformed id or hash)
        return
    except redis.RedisError as exc:
        # No expiry: said so. Not raised either: rq would then send a delivered message again. The
        # attempt is recorded (webhook_messages, the operator's page); only the job's status lags.
        log.warning("webhook %s: its %s state not shown on job %s: %s", message["id"], state, job_id, exc)
