"""A removed vendor's Redis keys, deleted: its jobs and everything else kept under its name.

Everything a vendor has is found by its name (its jobs' index, lanes, batches,
idempotency keys, limits, usage), so a removed vendor's name stays taken
(``imgproc.adapters.vendors``) until ``imgproc vendors purge`` deletes these,
its rows and its result files: a new vendor of that name then starts with none
of them.
"""

from __future__ import annotations

import datetime as dt

import redis
from rq import Queue
from rq.job import Job, JobStatus

from imgproc.jobtypes import ALL_QUEUES, QUEUE_WEBHOOKS

from . import jobindex, usage
from .batches import KEY_BATCH_ENDED
from .events import KEY_BATCH_EVENTS, KEY_JOB_EVENTS
from .fairshare import KEY_ACTIVE, KEY_ACTIVE_WEBHOOKS, KEY_LANE, forget
from .keys import (
    KEY_BATCH,
    KEY_IDEMPOTENCY,
    KEY_LIMIT,
    KEY_UPLOAD,
    KEY_UPLOAD_EXPIRIES,
    KEY_UPLOAD_HELD,
    KEY_UPLOAD_SIZES,
    KEY_VENDOR_JOBS,
)
from .openstreams import KEY_OPEN_STREAMS
from .state import JobState

#: Keys named by the vendor alone.
VENDOR_KEYS = (KEY_VENDOR_JOBS, KEY_UPLOAD_HELD, KEY_UPLOAD_SIZES, KEY_UPLOAD_EXPIRIES, KEY_OPEN_STREAMS)


def _jobs(conn: redis.Redis, vendor: str) -> tuple[list[str], list[Job]]:
    ids = [i.decode() for i in conn.zrange(KEY_VENDOR_JOBS.format(vendor), 0, -1)]
    return ids, [job for job in Job.fetch_many(ids, connection=conn) if job is not None]


def running(conn: redis.Redis, vendor: str) -> list[str]:
    """The vendor's jobs a worker runs now: a purge waits for them (their worker would write again)."""
    return [job.id for job in _jobs(conn, vendor)[1] if job.get_status(refresh=False) == JobStatus.STARTED]


def _deliveries(conn: redis.Redis, vendor: str) -> list[Job]:
    """The vendor's webhook deliveries waiting: in its lane, the queue, or for a retry."""
    queue = Queue(QUEUE_WEBHOOKS, connection=conn)
    ids = [i.decode() for i in conn.lrange(KEY_LANE.format(queue=QUEUE_WEBHOOKS, vendor=vendor), 0, -1)]
    ids += queue.job_ids + queue.scheduled_job_registry.get_job_ids()
    found = Job.fetch_many(ids, connection=conn)
    return [job for job in found if job is not None and JobState.of(job).vendor == vendor]


def purge(conn: redis.Redis, vendor: str) -> int:
    """Delete the vendor's jobs (their uploads, events and batches too) and its keys; how many jobs."""
    ids, jobs = _jobs(conn, vendor)
    batches = {JobState.of(job).batch_id for job in jobs} - {None}
    for job in jobs + _deliveries(conn, vendor):
        job.delete(remove_from_queue=True)  # from its queue and its registries too
    # The patterns hold the name whole: a name has no glob character, and each key ends with it or ':'.
    scanned = [
        *conn.scan_iter(KEY_IDEMPOTENCY.format(vendor, "*")),
        *conn.scan_iter(KEY_LIMIT.format("*", vendor)),
    ]
    today = dt.datetime.now(dt.UTC)
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.delete(KEY_JOB_EVENTS.format(job_id), KEY_UPLOAD.format(job_id))
        for batch_id in batches:
            pipe.delete(*(key.format(batch_id) for key in (KEY_BATCH, KEY_BATCH_EVENTS, KEY_BATCH_ENDED)))
        for queue in ALL_QUEUES:  # its lanes, its place in the fair share's sets, its pause
            forget(pipe, queue, vendor)
        jobindex.purge(pipe, vendor, [(job.id, JobState.of(job).record_id) for job in jobs])
        for key in (KEY_ACTIVE, KEY_ACTIVE_WEBHOOKS):
            pipe.delete(key.format(vendor=vendor))
        pipe.delete(*(key.format(vendor) for key in VENDOR_KEYS))
        if scanned:
            pipe.delete(*scanned)
        for day in range(usage.KEEP_DAYS):
            name = (today - dt.timedelta(days=day)).strftime("%Y-%m-%d")
            pipe.hdel(usage.KEY_USAGE.format(name), *(f"{vendor}|{figure}" for figure in usage.FIGURES))
        pipe.execute()
    return len(jobs)  # deliveries are counted by their rows (the database's purge)
