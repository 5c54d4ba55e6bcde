"""Queueing: jobs into RQ on Redis through the vendors' fair-share lanes, and read back per vendor.

    connection.py   redis_for(): the Redis client every part uses (through Sentinel when set)
    jobs.py         JobQueue.enqueue (one transaction per request), idempotency keys, NewJob
    views.py        JobViews: a job, a batch, counts per queue and vendor, as API.md shows them
    fairshare.py    per-vendor lanes in front of each RQ queue, fed in turn (Lua)
    uploads.py      uploaded photos kept in Redis for the worker
    keys.py         imgproc's own Redis keys and the job states
    hosts.py        the inference workers of each host, counted so replicas share its cores
    purge.py        a removed vendor's jobs and keys deleted (``imgproc vendors purge``)
    planfeed.py     each vendor's plan published in Redis, read by every process within seconds
    pauses.py       paused queues and vendors: their jobs wait in their lanes
    jobindex.py     the jobs' search index (by vendor, state, type, time, record id), kept at each change
    jobfilter.py    a search filter parsed once (400 naming the field), and its opaque cursor
    search.py       a filter's pages and counts over the index, each hit checked against its job
    bulk.py         cancel or retry every job a filter matches, after a dry run's count

Nothing here knows HTTP or models: the API and the workers both build on it.
"""

from .connection import connect, redis_for
from .fairshare import FairShare
from .jobs import JobQueue, NewJob

__all__ = ["FairShare", "JobQueue", "NewJob", "connect", "redis_for"]
