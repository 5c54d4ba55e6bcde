"""Lists for the web page and its JSON routes: jobs newest first, page by page or by a filter; the workers."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from rq.job import Job
from rq.worker import Worker

from imgproc.jobtypes import Payload

from .jobfilter import JobFilter, encode_cursor
from .keys import KEY_VENDOR_JOBS
from .search import Search
from .state import JobState
from .views import JobViews, _iso

#: Most jobs on one page.
MAX_PER_PAGE = 100


def vendor_jobs(
    jobs: JobViews, vendor: str, page: int = 1, per_page: int = 20, base: str = ""
) -> dict[str, Any]:
    """One page of the vendor's jobs, newest first, as job views with their input's URL.

    ``base``: what their result URLs are made absolute on, as in ``job_view``.

    An expired job (its id still in the vendor's index) shows as ``{"job_id", "state": "expired"}``.
    """
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    page = max(1, page)
    key = KEY_VENDOR_JOBS.format(vendor)
    start = (page - 1) * per_page
    with jobs.conn.pipeline(transaction=False) as pipe:
        pipe.zcard(key)
        pipe.zrevrange(key, start, start + per_page - 1, withscores=True)
        total, raw_ids = pipe.execute()
    ids = [i.decode() for i, _ in raw_ids]
    items = [
        _item(jobs, job, base) if job is not None else {"job_id": job_id, "state": "expired"}
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=jobs.conn), strict=True)
    ]
    full = len(ids) == per_page and start + per_page < total
    return {
        "jobs": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": max(1, -(-total // per_page)),
        # The next page as a search of the vendor's jobs would go on (search_jobs).
        "next_cursor": encode_cursor(JobFilter(vendor=vendor), raw_ids[-1][1], ids[-1]) if full else None,
    }


def _item(jobs: JobViews, job: Job, base: str) -> dict[str, Any]:
    """A job as a listing shows it: its view, queue, vendor and input."""
    payload = Payload.of(job)
    return {
        **jobs.job_view(job, base),
        "vendor": JobState.of(job).vendor,
        "queue": job.origin,
        "image_url": payload.image_url if payload else None,
        "upload": payload.upload if payload else False,
    }


def search_jobs(
    jobs: JobViews, flt: JobFilter, after: tuple[float, str] | None = None, per_page: int = 20, base: str = ""
) -> dict[str, Any]:
    """One page of the jobs a filter finds, newest first, and the cursor of the next (None at the end).

    A page may hold fewer than ``per_page`` jobs and still have a next one: a filter matching few
    of many candidates answers after ``search.SCAN`` of them.
    """
    found = Search(jobs.conn, flt, jobs.settings.failure_ttl).page(after, max(1, min(per_page, MAX_PER_PAGE)))
    return {
        "jobs": [_item(jobs, job, base) for job in found.jobs],
        "next_cursor": encode_cursor(flt, *found.after) if found.after else None,
    }


def workers(jobs: JobViews) -> list[dict[str, Any]]:
    """Every registered worker process: where it runs, what it serves, what it is doing, what it did."""
    found = []
    for worker in Worker.all(connection=jobs.conn):
        beat = worker.last_heartbeat
        found.append(
            {
                "name": worker.name,
                "hostname": worker.hostname,
                "pid": worker.pid,
                "queues": worker.queue_names(),
                "state": str(getattr(worker.state, "value", worker.state)),
                "current_job_id": worker.get_current_job_id(),
                "jobs_done": worker.successful_job_count,
                "jobs_failed": worker.failed_job_count,
                "working_seconds": round(worker.total_working_time or 0, 3),
                "started_at": _iso(worker.birth_date),
                "last_heartbeat": _iso(beat.replace(tzinfo=beat.tzinfo or UTC) if beat else None),
                # rq does not record a worker's memory; None says "not known" rather than a guess.
                "memory_bytes": None,
            }
        )
    return sorted(found, key=lambda w: (w["hostname"] or "", w["pid"] or 0))
