"""Operator views behind ``imgproc jobs`` and ``imgproc queues``: failed jobs, retrying them, counts.

Failed jobs are read from rq's ``FailedJobRegistry`` of each queue and put
back with rq's own requeue, after their meta is reset so the retried run
starts clean. A retried job goes straight to its RQ queue, not through its
vendor's fair-share lane: it already had its turn.
"""

from __future__ import annotations

from typing import Any

from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from imgproc.jobtypes import QUEUES
from imgproc.queueing import JobQueue
from imgproc.queueing.keys import STATES

#: Longest error message shown in the failed-jobs table; the rest is cut.
MESSAGE_WIDTH = 60
QUEUE_COLUMNS = ("queued", "started", "scheduled", "deferred", "finished", "failed", "workers")
FAILED_HEADERS = ("job id", "queue", "vendor", "record", "type", "attempts", "error", "ended at", "message")


class RetryRefused(Exception):
    """Raised when a job cannot be retried: it does not exist or has not failed."""


def failed_jobs(
    jobs: JobQueue, *, queue: str | None = None, vendor: str | None = None
) -> list[dict[str, Any]]:
    """Failed jobs of every queue (or one), optionally of one vendor, as job views, newest first."""
    found = []
    for name in [queue] if queue else QUEUES:
        ids = FailedJobRegistry(name, connection=jobs.conn).get_job_ids()
        for job in Job.fetch_many(ids, connection=jobs.conn):
            if job is None or (vendor is not None and job.meta.get("vendor") != vendor):
                continue  # expired since it was listed, or another vendor's
            found.append({**jobs.job_view(job), "queue": job.origin, "vendor": job.meta.get("vendor")})
    # ISO-8601 UTC strings sort as the times they name.
    found.sort(key=lambda view: view["ended_at"] or "", reverse=True)
    return found


def failed_rows(views: list[dict[str, Any]]) -> list[tuple]:
    """One row of the failed-jobs table per job view, in ``FAILED_HEADERS`` order."""
    rows = []
    for view in views:
        error = view["error"] or {}
        message = " ".join(str(error.get("message", "")).split())
        if len(message) > MESSAGE_WIDTH:
            message = message[: MESSAGE_WIDTH - 3] + "..."
        rows.append(
            (
                view["job_id"],
                view["queue"],
                view["vendor"],
                view["record_id"],
                view["type"],
                view["attempts"],
                error.get("code"),
                view["ended_at"],
                message,
            )
        )
    return rows


def retry(jobs: JobQueue, job_or_id: Job | str) -> Job:
    """Requeue one failed job with a clean meta and a fresh set of attempts; RetryRefused if it cannot be."""
    job = job_or_id
    if isinstance(job_or_id, str):
        try:
            job = Job.fetch(job_or_id, connection=jobs.conn)
        except NoSuchJobError:
            raise RetryRefused(f"no job {job_or_id}") from None
    status = job.get_status(refresh=False)
    if status != JobStatus.FAILED:
        raise RetryRefused(f"job {job.id} is {getattr(status, 'value', status)}, not failed")
    meta = job.meta
    meta.pop("error", None)
    meta.pop("output", None)  # the retried run processes the photo again
    meta["stage"] = "queued"  # progress stays: it never goes down
    # Attempts are history; the retried run gets the current settings' attempts on top of them.
    meta["max_attempts"] = meta.get("attempts", 0) + jobs.settings.max_attempts
    job.retries_left = jobs.settings.max_retries  # a permanent error had set it to 0
    job.retry_intervals = jobs.settings.retry_intervals
    try:
        # rq's requeue removes the job from the registry first and saves the job (meta included)
        # only when it was there, so a job requeued twice at once runs once.
        return FailedJobRegistry(job.origin, connection=jobs.conn).requeue(job)
    except InvalidJobOperation:
        raise RetryRefused(f"job {job.id} is not in the failed jobs of {job.origin}") from None


def retry_failed(
    jobs: JobQueue, *, queue: str | None = None, vendor: str | None = None
) -> tuple[list[Job], list[str]]:
    """Requeue every failed job (of a queue, of a vendor), oldest first; returns the jobs and the refusals."""
    requeued, refused = [], []
    for view in reversed(failed_jobs(jobs, queue=queue, vendor=vendor)):
        try:
            requeued.append(retry(jobs, view["job_id"]))
        except RetryRefused as exc:  # retried or expired by someone else meanwhile
            refused.append(str(exc))
    return requeued, refused


def queue_rows(stats: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple]]:
    """Headers and rows of the per-queue table of ``JobQueue.stats``."""
    rows = [(name, *(counts[c] for c in QUEUE_COLUMNS)) for name, counts in stats["queues"].items()]
    return ("queue", *QUEUE_COLUMNS), rows


def vendor_rows(stats: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple]]:
    """Headers and rows of the per-vendor table of ``JobQueue.stats``."""
    # The queue table's order first, then the states only a job has.
    columns = (*(c for c in QUEUE_COLUMNS if c in STATES), *(s for s in STATES if s not in QUEUE_COLUMNS))
    rows = [(name, *(counts.get(c, 0) for c in columns)) for name, counts in stats["vendors"].items()]
    return ("vendor", *columns), rows


def table(headers: tuple[str, ...], rows: list[tuple]) -> str:
    """Plain text columns two spaces apart, numbers aligned right; ``-`` for missing values."""
    cells = [list(headers)] + [["-" if v is None or v == "" else str(v) for v in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(headers))]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric, strict=True)
        ).rstrip()
        for line in cells
    )
