"""Retrying failed jobs, for the operator's CLI and page alike: the failed jobs, one retried, all retried.

Failed jobs are read from rq's ``FailedJobRegistry`` of each queue and put
back at the end of their vendor's fair-share lane (``JobQueue.requeue``),
after their meta is reset so the retried run starts clean: a retry is an
enqueue like any other and waits its vendor's turn (rq's own requeue pushed
it straight into the RQ queue, ahead of every other vendor's lane).
"""

from __future__ import annotations

from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from imgproc.jobtypes import QUEUES

from . import uploads
from .jobs import JobQueue
from .state import JobState


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
            if job is None or (vendor is not None and JobState.of(job).vendor != vendor):
                continue  # expired since it was listed, or another vendor's
            if job.get_status(refresh=False) == JobStatus.STOPPED:
                continue  # rq keeps stopped jobs in the failed registry: stopped on purpose, not failed
            found.append({**jobs.job_view(job), "queue": job.origin, "vendor": JobState.of(job).vendor})
    # ISO-8601 UTC strings sort as the times they name.
    found.sort(key=lambda view: view["ended_at"] or "", reverse=True)
    return found


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
    if not uploads.kept(jobs.conn, job):
        raise RetryRefused(f"job {job.id}'s uploaded photo was dropped when it failed: upload it again")
    JobState.of(job).reset_for_retry(jobs.settings.max_attempts)
    job.retries_left = jobs.settings.max_retries  # a permanent error had set it to 0
    job.retry_intervals = jobs.settings.retry_intervals
    # Out of the registry first, as rq's requeue does: of two retries at once, one runs.
    if not jobs.conn.zrem(FailedJobRegistry(job.origin, connection=jobs.conn).key, job.id):
        raise RetryRefused(f"job {job.id} is not in the failed jobs of {job.origin}")
    return jobs.requeue(job)


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
