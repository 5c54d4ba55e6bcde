"""Finding jobs by filter, newest first, a page at a time: over the job index (``jobindex``).

Most filters are answered by the scope's (a vendor's, or every vendor's)
sets of the filter's state bucket and type: one set for both, the three
types' or five buckets' for one alone, merged by score from the cursor down,
the time range being their score range. A batch, a record id (or a prefix
matching up to ``RECORDS_READ`` entries) and the states rq keeps in
registries (started, scheduled, deferred) give a short list of job ids
instead, which ZMSCORE on those sets both checks and orders. Every candidate is
then checked against the whole filter on the job itself (its status and
meta): the index only narrows the search, a stale entry never shows, and one
found stale is repaired (a job gone leaves the set, a job in the wrong bucket
moves). A page reads at most ``SCAN`` candidates: a filter that matches few
of many answers a short page with a cursor to go on from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import redis
from rq.job import Job
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from imgproc.jobtypes import JOB_TYPES, QUEUES

from . import jobindex
from .batches import batch
from .jobfilter import JobFilter
from .state import JobState

#: A record prefix matching at most this many entries is read whole and ordered by its jobs' times;
#: past it, the search reads the filter's other set and checks each job's record id.
RECORDS_READ = 10_000
#: Most candidates of a page checked at a time (one round trip for their jobs), and of a count.
CHUNK = 200
EACH = 2_000
#: Most candidates one page checks before it answers with what it found and a cursor.
SCAN = 5_000
# ARGV: rq's job key prefix, then job ids.  Each job's status (nil when it is gone): one call a chunk,
# where a pipeline of HGETs cost redis-py ~10 us of parsing a job (a count of 100,000 took 1.1 s).
_STATUSES = """
local found = {}
for i = 2, #ARGV do found[i - 1] = redis.call('HGET', ARGV[1] .. ARGV[i], 'status') end
return found
"""

#: States rq keeps in registries of their own, small beside the open bucket.
REGISTRIES = {
    "started": StartedJobRegistry,
    "scheduled": ScheduledJobRegistry,
    "deferred": DeferredJobRegistry,
}


@dataclass
class Found:
    """A page of a search: the jobs in order, and where the next page starts (None: no more)."""

    jobs: list[Job]
    after: tuple[float, str] | None


class Search:
    """A filter's jobs in one Redis: a page of whole jobs (``page``), or every match's state (``each``).

    ``keep``: the index's lifetime (``failure_ttl``), for the moves a search repairs.
    """

    def __init__(self, conn: redis.Redis, flt: JobFilter, keep: int):
        self.conn, self.flt, self.keep = conn, flt, keep
        self.scope = flt.vendor or jobindex.ALL
        bucket = jobindex.bucket_of(flt.state) if flt.state else None
        self.bucket = bucket
        self.keys = jobindex.time_keys(self.scope, bucket, flt.type)
        #: Where the candidates come from (``candidates`` sets it): batch, registry, records or time.
        self.source = "time"

    def page(self, after: tuple[float, str] | None = None, limit: int = 20, scan: int = SCAN) -> Found:
        """Up to ``limit`` jobs after ``after``, newest first, checking at most ``scan`` candidates."""
        found: list[Job] = []
        checked = 0
        last = None
        for chunk in self.candidates(after, first=limit):
            jobs = Job.fetch_many([job_id for _, job_id in chunk], connection=self.conn)
            kept = self._checked(chunk, [(j, self._status(j), JobState.of(j)) if j else None for j in jobs])
            for (score, job_id), job in zip(chunk, kept, strict=True):
                checked += 1
                last = (score, job_id)
                if job is not None:
                    found.append(job)
                    if len(found) == limit:
                        return Found(found, last)
                if checked >= scan:
                    return Found(found, last)
        return Found(found, None)

    def each(self) -> Iterator[tuple[float, str, str, JobState | None]]:
        """Every match as ``(score, job_id, status, state)``, in no set order, reading its status alone.

        The set read (and the lists' entries) already hold a job's vendor, type, bucket, batch and
        record; its meta (``state``) is read only where a record id is checked job by job. The sets
        are read one after the other: merging them in time order read each up to three times over.
        """
        for chunk in self.candidates(None, first=EACH, ordered=False):
            flt = self.flt
            meta = (flt.record_id is not None and self.source != "records") or (
                flt.batch_id is not None and self.source != "batch"
            )
            if meta:
                with self.conn.pipeline(transaction=False) as pipe:
                    for _, job_id in chunk:
                        pipe.hmget(Job.key_for(job_id), "status", "meta")
                    read = pipe.execute()
            else:
                read = [
                    [status]
                    for status in self.conn.eval(
                        _STATUSES, 0, Job.redis_job_namespace_prefix, *(i for _, i in chunk)
                    )
                ]
            seen = [
                (None, got[0].decode(), JobState.loads(got[1]) if len(got) > 1 else None)
                if got[0] is not None
                else None
                for got in read
            ]
            for (score, job_id), hit, item in zip(chunk, self._checked(chunk, seen), seen, strict=True):
                if hit is not None and item is not None:
                    yield score, job_id, item[1], item[2]

    def count(self) -> int:
        return len({job_id for _, job_id, _, _ in self.each()})  # a job moved while read shows twice

    @staticmethod
    def _status(job: Job) -> str:
        status = job.get_status(refresh=False)
        return str(getattr(status, "value", status))

    def _checked(self, chunk: list[tuple[float, str]], read: list) -> list:
        """Per candidate, what was read when the filter admits it, else None; stale entries repaired."""
        kept, gone = [], []
        with self.conn.pipeline(transaction=False) as pipe:
            for (score, job_id), item in zip(chunk, read, strict=True):
                if item is None:
                    gone.append(job_id)
                    kept.append(None)
                    continue
                _, status, state = item
                if self.bucket and jobindex.bucket_of(status) != self.bucket and state and state.vendor:
                    job_type = state.type if state.type in JOB_TYPES else None
                    bucket = jobindex.bucket_of(status)
                    jobindex.place(pipe, state.vendor, job_id, job_type, bucket, self.keep)
                admitted = self.flt.admits(status, state, score)
                kept.append((item[0] or True) if admitted else None)  # the job when it was read whole
            jobindex.forget(pipe, self.keys, gone)
            if len(pipe):
                pipe.execute()
        return kept

    # Candidates: (score, job id) newest first, after the cursor, within the time range, in chunks
    # growing from ``first`` to ``CHUNK``: a page of 20 reads about 20 jobs when most match.

    def candidates(
        self, after: tuple[float, str] | None, first: int = CHUNK, ordered: bool = True
    ) -> Iterator[list[tuple[float, str]]]:
        flt = self.flt
        if flt.state in ("failed", "stopped", "canceled"):
            jobindex.sync(self.conn, self.keep)  # ends no move wrote (a dead worker's last attempt)
        ids = self._listed()
        if ids is None:
            for keys in [self.keys] if ordered else [[key] for key in self.keys]:
                yield from self._read(after, first, keys)
            return
        scored, size, start = self._scored(ids, after), first, 0
        while start < len(scored):
            yield scored[start : start + size]
            start, size = start + size, min(2 * size, max(CHUNK, first))

    def _listed(self) -> list[str] | None:
        """The short list of job ids the filter names, when it names one; None: read the set."""
        flt = self.flt
        self.source = (
            "batch" if flt.batch_id is not None else "registry" if flt.state in REGISTRIES else "records"
        )
        if flt.batch_id is not None:
            record = batch(self.conn, flt.batch_id)
            if record is None or (flt.vendor is not None and record["vendor"] != flt.vendor):
                return []
            return list(record["job_ids"])
        if flt.state in REGISTRIES:
            registry = REGISTRIES[flt.state]
            queues = [JOB_TYPES[flt.type].queue] if flt.type else QUEUES
            with self.conn.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.zrange(registry(queue, connection=self.conn).key, 0, -1)
                return [raw.decode() for found in pipe.execute() for raw in found]
        if flt.record_id is not None:
            records = jobindex.KEY_RECORDS.format(scope=self.scope)
            if flt.prefix is not None:
                low, high = b"[" + flt.prefix.encode(), b"(" + flt.prefix.encode() + b"\xff"
            else:
                entry = flt.record_id.encode()
                low, high = b"[" + entry + b"\x00", b"(" + entry + b"\x01"
            if self.conn.zlexcount(records, low, high) > RECORDS_READ:
                self.source = "time"
                return None
            return [raw.rsplit(b"\x00", 1)[1].decode() for raw in self.conn.zrangebylex(records, low, high)]
        self.source = "time"
        return None

    def _scored(self, ids: list[str], after: tuple[float, str] | None) -> list[tuple[float, str]]:
        """The ids in the filter's sets, with their scores, newest first, after ``after``, in range."""
        found: dict[str, float] = {}
        for start in range(0, len(ids), 10_000):
            part = ids[start : start + 10_000]
            with self.conn.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.zmscore(key, part)
                for scores in pipe.execute():
                    found.update((i, s) for i, s in zip(part, scores, strict=True) if s is not None)
        flt = self.flt
        kept = [(s, i) for i, s in found.items() if flt.in_range(s) and (after is None or (s, i) < after)]
        return sorted(kept, reverse=True)

    def _read(
        self, after: tuple[float, str] | None, size: int, keys: list[str]
    ) -> Iterator[list[tuple[float, str]]]:
        """The filter's sets by score, merged, from ``after`` down: one round trip per chunk.

        Each set gives its next ``size`` entries and the merge keeps the ``size`` newest: none left
        unread in a set can be newer than the last one kept. Jobs of one enqueue share a score; those
        after the cursor's job within its score are read whole (ZREVRANGEBYSCORE lists one score's
        members by descending id, the order of a page).
        """
        flt = self.flt
        low = "-inf" if flt.created_after is None else repr(flt.created_after)
        top = "+inf" if flt.created_before is None else f"({flt.created_before!r}"
        growth = max(CHUNK, size)
        while True:
            high = top if after is None else f"({after[0]!r}"  # a cursor's place is within the range
            with self.conn.pipeline(transaction=False) as pipe:
                for key in keys:
                    if after is not None:
                        pipe.zrevrangebyscore(key, repr(after[0]), repr(after[0]), withscores=True)
                    pipe.zrevrangebyscore(key, high, low, start=0, num=size, withscores=True)
                read = pipe.execute()
            merged, more = set(), False
            step = 1 if after is None else 2
            for at in range(0, len(read), step):
                if after is not None:
                    merged.update((s, i.decode()) for i, s in read[at] if i.decode() < after[1])
                below = read[at + step - 1]
                merged.update((s, i.decode()) for i, s in below)
                more = more or len(below) == size
            chunk = sorted(merged, reverse=True)[:size]
            if chunk:
                yield chunk
            if not more and len(merged) <= size:
                return
            after, size = chunk[-1], min(2 * size, growth)
