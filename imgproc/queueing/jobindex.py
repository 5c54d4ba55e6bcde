"""The job index: sorted sets that find a vendor's jobs (or everyone's) by state, type and record id.

Each job is entered twice, under its vendor's name and under ``@all`` (every
vendor's: an operator's search; ``@`` is not in a vendor's name), in one
sorted set per state bucket and type, scored by its enqueue time (the score of
``KEY_VENDOR_JOBS``, the vendor's set of all its jobs, kept since before this
index), and in a set of record ids (every score 0, members ``record_id NUL
job_id``: ZRANGEBYLEX finds a record id or a prefix):

    imgproc:jx:{scope}:state:{bucket}:type:{type}     imgproc:jx:{scope}:records

A search of a state alone reads the three types' sets together, of a type the
five buckets' (``imgproc.queueing.search`` merges them): four entries a job,
about 600 bytes, where a set for each state, each type and every vendor's jobs
besides took twice that (128 MB at 100,000 jobs, ``bench/jobsearch.py``).

A bucket is a job's state as far as imgproc writes it: ``open`` (queued,
started, scheduled or deferred: rq moves a job between these on its own, and
a search reads those from rq's registries or checks the job), or one of the
ends (finished, failed, stopped, canceled). The enqueue adds a job (one EVAL in
its transaction: no round trip), its end moves it (``move``: one EVAL in the
end's transaction for a finished job, one round trip for the other ends), a
cancel or a retry too. Entries older than ``failure_ttl`` are trimmed where
their sets are written, record entries whose job is gone are pruned a few at
each enqueue, and ``reindex`` builds it all from ``KEY_VENDOR_JOBS`` (jobs
enqueued before this index; any drift).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import redis
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry

from imgproc.jobtypes import JOB_TYPES

from .keys import KEY_VENDOR_JOBS
from .state import JobState

#: The scope of every vendor's jobs, an operator's; ``@`` is not in a vendor's name.
ALL = "@all"
KEY_SET = "imgproc:jx:{scope}:state:{bucket}:type:{type}"
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

# KEYS: per scope (the vendor's, everyone's) the open set of the jobs' type, its records, and where
# the last prune of its records stopped.  ARGV: the enqueue's time, the trim's cut-off, how many
# record entries to prune, rq's job key prefix, then each job's id and record id.  One call: its
# commands one by one cost a single-job enqueue 0.23 ms of client time, this one a few hundredths.
_ADD = """
local created, cutoff, prune, jobs = ARGV[1], '(' .. ARGV[2], tonumber(ARGV[3]), ARGV[4]
-- ZADD's arguments in runs of at most 2,000 members (Lua's unpack has a stack to fit in)
local timed, named, new = {{}}, {{}}, {}
for i = 5, #ARGV, 2 do
  new[ARGV[i]] = true  -- its job is written in the same transaction, maybe after this call
  if #timed[#timed] >= 4000 then timed[#timed + 1], named[#named + 1] = {}, {} end
  local t, n = timed[#timed], named[#named]
  t[#t + 1], t[#t + 2] = created, ARGV[i]
  n[#n + 1], n[#n + 2] = 0, ARGV[i + 1] .. '\\0' .. ARGV[i]
end
for k = 1, #KEYS, 3 do
  local set, records, mark = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  for _, run in ipairs(timed) do redis.call('ZADD', set, unpack(run)) end
  redis.call('ZREMRANGEBYSCORE', set, '-inf', cutoff)
  for _, run in ipairs(named) do redis.call('ZADD', records, unpack(run)) end
  -- record entries of jobs gone go, twice as many checked as added, round the set
  local at = redis.call('GET', mark)
  local entries = redis.call('ZRANGEBYLEX', records, at and ('(' .. at) or '-', '+', 'LIMIT', 0, prune)
  for _, entry in ipairs(entries) do
    local id = string.match(entry, '%z([^%z]*)$')
    if not new[id] and redis.call('EXISTS', jobs .. id) == 0 then
      redis.call('ZREM', records, entry)
    end
  end
  if #entries < prune then redis.call('DEL', mark) else redis.call('SET', mark, entries[#entries]) end
end
return 1
"""


def time_keys(scope: str, bucket: str | None = None, job_type: str | None = None) -> list[str]:
    """The sets holding the scope's jobs in ``bucket`` (any when None) of ``job_type`` (any when None).

    A vendor's jobs of any bucket and type: its own set of all its jobs (old ones included).
    """
    if scope != ALL and bucket is None and job_type is None:
        return [KEY_VENDOR_JOBS.format(scope)]
    return [
        KEY_SET.format(scope=scope, bucket=b, type=t)
        for b in ([bucket] if bucket else BUCKETS)
        for t in ([job_type] if job_type else JOB_TYPES)
    ]


def record_entry(record_id: str, job_id: str) -> str:
    return f"{record_id}\x00{job_id}"


def bucket_of(status: str | None) -> str:
    return BUCKET_OF.get(status or "", OPEN)


def add(pipe, vendor: str, job_type: str, jobs: list[tuple[str, str]], created: float, keep: int) -> None:
    """An enqueue's jobs (``(job_id, record_id)``) into the index, open, on the enqueue's ``pipe``.

    One EVAL whatever the enqueue's size: the ZADDs, the trims of the sets it writes, and a prune of
    twice as many record entries as it adds (so that a set of records is at most twice its live size).
    """
    keys = []
    for scope in (vendor, ALL):
        keys += [KEY_SET.format(scope=scope, bucket=OPEN, type=job_type), KEY_RECORDS.format(scope=scope)]
        keys.append(KEY_RECORDS_AT.format(scope=scope))
    args: list = [created, created - keep, 2 * len(jobs) + 1, Job.redis_job_namespace_prefix]
    for job_id, record_id in jobs:
        args += [job_id, record_id]
    pipe.eval(_ADD, len(keys), *keys, *args)


def move(pipe, job: Job, keep: int, status: str | None = None) -> None:
    """The job into the bucket of its status (``status`` when given), on ``pipe``: one EVAL.

    A job missing from its vendor's set (trimmed, or enqueued before the index) is left alone.
    """
    state = JobState.of(job)
    if state.vendor and state.type in JOB_TYPES:
        place(pipe, state.vendor, job.id, state.type, bucket_of(status or _status(job)), keep)


def place(pipe, vendor: str, job_id: str, job_type: str, bucket: str, keep: int) -> None:
    """The job into ``bucket`` (out of the others), on ``pipe``: one EVAL."""
    leave, enter = [], []
    for scope in (vendor, ALL):
        for other in BUCKETS:
            (enter if other == bucket else leave).append(
                KEY_SET.format(scope=scope, bucket=other, type=job_type)
            )
    keys = [KEY_VENDOR_JOBS.format(vendor), *leave, *enter]
    pipe.eval(_MOVE, len(keys), *keys, job_id, len(leave), time.time() - keep)


def _status(job: Job) -> str:
    status = job.get_status(refresh=False)
    return str(getattr(status, "value", status))


def forget(pipe, keys: list[str], job_ids: Iterable[str]) -> None:
    """Ids of jobs that are gone, out of the sets a search read them from (a read's repair)."""
    ids = list(job_ids)
    if ids:
        for key in keys:
            pipe.zrem(key, *ids)


def purge(pipe, vendor: str, jobs: Iterable[tuple[str, str | None]]) -> None:
    """A purged vendor's index gone, on ``pipe``: its own sets, and its jobs (``(job_id, record_id)``)
    out of every vendor's."""
    pipe.delete(*_own_keys(vendor))
    ids, entries = [], []
    for job_id, record_id in jobs:
        ids.append(job_id)
        if record_id is not None:
            entries.append(record_entry(record_id, job_id))
    if ids:
        forget(pipe, time_keys(ALL), ids)
    if entries:
        pipe.zrem(KEY_RECORDS.format(scope=ALL), *entries)


def _own_keys(vendor: str) -> list[str]:
    keys = [KEY_SET.format(scope=vendor, bucket=b, type=t) for b in BUCKETS for t in JOB_TYPES]
    return [*keys, KEY_RECORDS.format(scope=vendor), KEY_RECORDS_AT.format(scope=vendor)]


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
                    state = JobState.loads(meta)
                    if status is None or state.type not in JOB_TYPES:
                        pipe.zrem(key, job_id)
                        done["gone"] += 1
                        continue
                    bucket = bucket_of(status.decode())
                    for scope in (name, ALL):  # where place() reads it from, then moves it
                        pipe.zadd(
                            KEY_SET.format(scope=scope, bucket=bucket, type=state.type), {job_id: score}
                        )
                        if state.record_id is not None:
                            entry = record_entry(state.record_id, job_id)
                            pipe.zadd(KEY_RECORDS.format(scope=scope), {entry: 0})
                    place(pipe, name, job_id, state.type, bucket, keep)
                    done["jobs"] += 1
                pipe.execute()
    return done


def sync(conn: redis.Redis, keep: int) -> int:
    """Ends that no move wrote (a dead worker's job failed by rq's sweep), moved: at most every few seconds.

    rq's failed registry (failed and stopped jobs) and canceled registry of each type's queue, less
    the index's sets of those ends.
    """
    if not conn.set(KEY_SYNCED, 1, nx=True, ex=SYNC_EVERY):
        return 0
    types: dict[str, list[str]] = {}
    for name, job_type in JOB_TYPES.items():
        types.setdefault(job_type.queue, []).append(name)
    with conn.pipeline(transaction=False) as pipe:
        for queue, names in types.items():
            failed = [
                KEY_SET.format(scope=ALL, bucket=b, type=t) for b in ("failed", "stopped") for t in names
            ]
            pipe.zdiff([FailedJobRegistry(queue, connection=conn).key, *failed])
            canceled = [KEY_SET.format(scope=ALL, bucket="canceled", type=t) for t in names]
            pipe.zdiff([CanceledJobRegistry(queue, connection=conn).key, *canceled])
        missing = sorted({raw.decode() for found in pipe.execute() for raw in found})
    ended = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
    found = [job for job in Job.fetch_many(missing, connection=conn) if job is not None]
    found = [job for job in found if job.get_status(refresh=False) in ended]
    with conn.pipeline(transaction=False) as pipe:
        for job in found:
            move(pipe, job, keep)
        pipe.execute()
    return len(found)
