"""The job index: sorted sets that find a vendor's jobs (or everyone's) by state, type and record id.

Each job is entered twice, under its vendor's name and under ``@all`` (every
vendor's: an operator's search; ``@`` is not in a vendor's name), in sorted
sets scored by its enqueue time, the score of ``KEY_VENDOR_JOBS`` (the
vendor's own "all jobs" set, kept since before this index):

    imgproc:jx:{scope}:state:{bucket}             imgproc:jx:{scope}:type:{type}
    imgproc:jx:{scope}:state:{bucket}:type:{type} imgproc:jx:@all:jobs

and in ``imgproc:jx:{scope}:records`` (every score 0, members
``record_id NUL job_id``: ZRANGEBYLEX finds a record id or a prefix).

A bucket is a job's state as far as imgproc writes it: ``open`` (queued,
started, scheduled or deferred: rq moves a job between these on its own, and
a search reads those from rq's registries or checks the job), or one of the
ends (finished, failed, stopped, canceled). The enqueue adds a job (in its
transaction: no round trip), its end moves it (``move``: one EVAL in the
end's transaction for a finished job, one round trip for the other ends), a
cancel or a retry too. Entries older than ``failure_ttl`` are trimmed where
their sets are written, record entries whose job left the index are pruned a
few at each enqueue, and ``reindex`` builds it all from ``KEY_VENDOR_JOBS``
(jobs enqueued before this index; any drift).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import redis
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry

from imgproc.jobtypes import JOB_TYPES, QUEUES

from .keys import KEY_VENDOR_JOBS
from .state import JobState

#: The scope of every vendor's jobs, an operator's; ``@`` is not in a vendor's name.
ALL = "@all"
KEY_ALL_JOBS = "imgproc:jx:@all:jobs"
KEY_STATE = "imgproc:jx:{scope}:state:{bucket}"
KEY_TYPE = "imgproc:jx:{scope}:type:{type}"
KEY_STATE_TYPE = "imgproc:jx:{scope}:state:{bucket}:type:{type}"
KEY_RECORDS = "imgproc:jx:{scope}:records"
#: Where the records' prune goes on from (the last member it read).
KEY_RECORDS_AT = "imgproc:jx:{scope}:records-at"
#: Set while a sync of rq's failed and canceled registries is fresh (``sync``).
KEY_SYNCED = "imgproc:jx:synced"

OPEN = "open"
BUCKETS = (OPEN, "finished", "failed", "stopped", "canceled")
#: A job's bucket by its rq status; a status not named here is open.
BUCKET_OF = {"finished": "finished", "failed": "failed", "stopped": "stopped", "canceled": "canceled"}
#: Seconds a sync of rq's registries is trusted before the next search that needs it repeats it.
SYNC_EVERY = 5

# KEYS: the vendor's jobs (the score), the sets it leaves, then the sets it enters.
# ARGV: job id, how many sets it leaves, the trim's cut-off.
_MOVE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local leave = tonumber(ARGV[2])
for i = 2, leave + 1 do redis.call('ZREM', KEYS[i], ARGV[1]) end
for i = leave + 2, #KEYS do
  redis.call('ZADD', KEYS[i], score, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[3])
end
return 1
"""

# KEYS: records, the scope's jobs, where the last prune stopped.  ARGV: how many entries to check.
_PRUNE = """
local at = redis.call('GET', KEYS[3])
local entries = redis.call('ZRANGEBYLEX', KEYS[1], at and ('(' .. at) or '-', '+', 'LIMIT', 0, ARGV[1])
for _, entry in ipairs(entries) do
  if not redis.call('ZSCORE', KEYS[2], string.match(entry, '%z([^%z]*)$')) then
    redis.call('ZREM', KEYS[1], entry)
  end
end
if #entries < tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[3])
else
  redis.call('SET', KEYS[3], entries[#entries])
end
return #entries
"""


def jobs_key(scope: str) -> str:
    """The scope's set of all its jobs."""
    return KEY_ALL_JOBS if scope == ALL else KEY_VENDOR_JOBS.format(scope)


def time_key(scope: str, bucket: str | None = None, job_type: str | None = None) -> str:
    """The set of the scope's jobs in ``bucket`` (any when None) of ``job_type`` (any when None)."""
    if bucket and job_type:
        return KEY_STATE_TYPE.format(scope=scope, bucket=bucket, type=job_type)
    if bucket:
        return KEY_STATE.format(scope=scope, bucket=bucket)
    if job_type:
        return KEY_TYPE.format(scope=scope, type=job_type)
    return jobs_key(scope)


def record_entry(record_id: str, job_id: str) -> str:
    return f"{record_id}\x00{job_id}"


def bucket_of(status: str | None) -> str:
    return BUCKET_OF.get(status or "", OPEN)


def add(pipe, vendor: str, job_type: str, jobs: list[tuple[str, str]], created: float, keep: int) -> None:
    """An enqueue's jobs (``(job_id, record_id)``) into the index, open, on the enqueue's ``pipe``.

    Nine ZADDs for the whole enqueue whatever its size, the trims of the sets it writes, and a prune
    of twice as many record entries as it adds.
    """
    scores = {job_id: created for job_id, _ in jobs}
    entries = {record_entry(record_id, job_id): 0 for job_id, record_id in jobs}
    cutoff = created - keep
    for scope in (vendor, ALL):
        keys = [time_key(scope, OPEN), time_key(scope, None, job_type), time_key(scope, OPEN, job_type)]
        if scope == ALL:
            keys.append(KEY_ALL_JOBS)  # the vendor's own is written by the enqueue
        for key in keys:
            pipe.zadd(key, scores)
            pipe.zremrangebyscore(key, "-inf", f"({cutoff}")
        records = KEY_RECORDS.format(scope=scope)
        pipe.zadd(records, entries)
        at = KEY_RECORDS_AT.format(scope=scope)
        pipe.eval(_PRUNE, 3, records, jobs_key(scope), at, 2 * len(jobs) + 8)


def move(pipe, job: Job, keep: int, status: str | None = None) -> None:
    """The job into the bucket of its status (``status`` when given), on ``pipe``: one EVAL.

    A job missing from its vendor's set (trimmed, or enqueued before the index) is left alone.
    """
    state = JobState.of(job)
    if state.vendor:
        job_type = state.type if state.type in JOB_TYPES else None
        place(pipe, state.vendor, job.id, job_type, bucket_of(status or _status(job)), keep)


def _status(job: Job) -> str:
    status = job.get_status(refresh=False)
    return str(getattr(status, "value", status))


def forget(pipe, key: str, job_ids: Iterable[str]) -> None:
    """Ids of jobs that are gone, out of the set a search read them from (a read's repair)."""
    ids = list(job_ids)
    if ids:
        pipe.zrem(key, *ids)


def scopes(conn: redis.Redis) -> Iterator[str]:
    """Every vendor that has a set of jobs."""
    prefix = KEY_VENDOR_JOBS.format("")
    for key in conn.scan_iter(prefix + "*", count=1000):
        yield key.decode()[len(prefix) :]


def reindex(conn: redis.Redis, keep: int, vendor: str | None = None, chunk: int = 1000) -> dict[str, int]:
    """Enter every job of a vendor's set (of every vendor's) in the index; drop the ids of jobs gone.

    Idempotent, and safe beside enqueues and workers: it only adds entries, moves a job to the
    bucket of its status now, and removes ids whose job has expired.
    """
    done = {"jobs": 0, "gone": 0}
    for name in [vendor] if vendor else list(scopes(conn)):
        key = KEY_VENDOR_JOBS.format(name)
        listed = conn.zrange(key, 0, -1, withscores=True)
        for start in range(0, len(listed), chunk):
            part = [(raw.decode(), score) for raw, score in listed[start : start + chunk]]
            with conn.pipeline(transaction=False) as pipe:
                for job_id, _ in part:
                    pipe.hmget(Job.key_for(job_id), "status", "meta")
                fields = pipe.execute()
            with conn.pipeline(transaction=False) as pipe:
                for (job_id, score), (status, meta) in zip(part, fields, strict=True):
                    if status is None:
                        pipe.zrem(key, job_id)
                        done["gone"] += 1
                        continue
                    state = JobState.loads(meta)
                    job_type = state.type if state.type in JOB_TYPES else None
                    for scope in (name, ALL):
                        for k in (time_key(scope, None, job_type), time_key(scope, OPEN, job_type)):
                            if k != key:
                                pipe.zadd(k, {job_id: score})
                        if state.record_id is not None:
                            pipe.zadd(
                                KEY_RECORDS.format(scope=scope), {record_entry(state.record_id, job_id): 0}
                            )
                    pipe.zadd(KEY_ALL_JOBS, {job_id: score})
                    place(pipe, name, job_id, job_type, bucket_of(status.decode()), keep)
                    done["jobs"] += 1
                pipe.execute()
    return done


def place(pipe, vendor: str, job_id: str, job_type: str | None, bucket: str, keep: int) -> None:
    """The job into ``bucket`` (out of the others), on ``pipe``: one EVAL."""
    leave, enter = [], []
    for scope in (vendor, ALL):
        for other in BUCKETS:
            keys = [time_key(scope, other), *([time_key(scope, other, job_type)] if job_type else [])]
            (enter if other == bucket else leave).extend(keys)
    keys = [KEY_VENDOR_JOBS.format(vendor), *leave, *enter]
    pipe.eval(_MOVE, len(keys), *keys, job_id, len(leave), time.time() - keep)


def sync(conn: redis.Redis, keep: int, queues: Iterable[str] = QUEUES) -> int:
    """Ends that no move wrote (a dead worker's job failed by rq's sweep), moved: at most every few seconds.

    rq's failed registry (failed and stopped jobs) and canceled registry, less the index's buckets.
    """
    if not conn.set(KEY_SYNCED, 1, nx=True, ex=SYNC_EVERY):
        return 0
    failed = [time_key(ALL, "failed"), time_key(ALL, "stopped")]
    with conn.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zdiff([FailedJobRegistry(queue, connection=conn).key, *failed])
            pipe.zdiff([CanceledJobRegistry(queue, connection=conn).key, time_key(ALL, "canceled")])
        missing = sorted({raw.decode() for found in pipe.execute() for raw in found})
    ended = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
    found = [job for job in Job.fetch_many(missing, connection=conn) if job is not None]
    found = [job for job in found if job.get_status(refresh=False) in ended]
    with conn.pipeline(transaction=False) as pipe:
        for job in found:
            move(pipe, job, keep)
        pipe.execute()
    return len(found)
