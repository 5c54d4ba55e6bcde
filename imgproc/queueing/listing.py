"""Lists for the web page and its JSON routes: a vendor's jobs newest first, page by page; the workers."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from rq.job import Job
from rq.worker import Worker

from imgproc.jobtypes import Payload

from .keys import KEY_VENDOR_JOBS
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
        pipe.zrevrange(key, start, start + per_page - 1)
        total, raw_ids = pipe.execute()
    ids = [i.decode() for i in raw_ids]
    items = []
    for job_id, job in zip(ids, Job.fetch_many(ids, connection=jobs.conn), strict=True):
        if job is None:
            items.append({"job_id": job_id, "state": "expired"})
            continue
        payload = Payload.of(job)
        items.append(
            {
                **jobs.job_view(job, base),
                "queue": job.origin,
                "image_url": payload.image_url if payload else None,
                "upload": payload.upload if payload else False,
            }
        )
    return {
        "jobs": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": max(1, -(-total // per_page)),
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
