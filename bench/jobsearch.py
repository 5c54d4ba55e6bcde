"""Finding jobs by filter at 100,000 jobs: each filter's first page, a deep page and a dry run's count.

On a Redis of its own: ``--jobs`` jobs of vendor ``acme`` (and 2,000 of ``beta``)
enqueued through ``JobQueue.enqueue`` in bulks of 500 (the API's path: rq's
jobs, the fair-share lanes, the job index), record ids ``sku-000000`` on, the
three job types in turn by bulk. Their ends then take the worker's fast path
for the index (the status and rq's registry as rq writes them, ``jobindex.place``
as the worker's end does): 70 % finished, 10 % failed, 5 % canceled, 4 started,
the rest queued. Each filter is then timed as the API answers it
(``listing.search_jobs``: the index read, the jobs fetched, their views),
best and median of ``--repeat``; "deep" follows the cursor ``--pages`` pages
and gives the mean per page; "count" is a dry run's (``Search.count``).
The enqueue's cost of the index: a 500-job bulk enqueued with and without it.

    python -m bench.jobsearch [--jobs 100000] [--repeat 5] [--pages 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from unittest import mock

import redis
from rq.registry import CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from bench.fairshare import start_server
from imgproc.config import Settings
from imgproc.jobtypes import JOB_TYPES, Payload
from imgproc.queueing import JobQueue, NewJob, jobindex, listing
from imgproc.queueing.jobfilter import JobFilter
from imgproc.queueing.search import Search

BULK = 500
TYPES = tuple(JOB_TYPES)
#: Each job's end by its number: finished, failed, canceled, else queued (4 started, below).
ENDS = (
    (70, "finished", FinishedJobRegistry),
    (80, "failed", FailedJobRegistry),
    (85, "canceled", CanceledJobRegistry),
)


def enqueue(jobs: JobQueue, vendor: str, start: int, count: int) -> tuple[list[str], str]:
    """``count`` jobs of ``vendor`` in bulks, record ids from ``start``; their ids and the last batch's."""
    made, batch_id = [], ""
    for at in range(start, start + count, BULK):
        job_type = TYPES[(at // BULK) % len(TYPES)]
        new = [
            NewJob(Payload(vendor, job_type, f"sku-{i:06}", {}, image_url="https://example.com/p.jpg"))
            for i in range(at, min(at + BULK, start + count))
        ]
        batch_id, enqueued = jobs.enqueue(new, batch=True)
        made += [job.id for job in enqueued]
    return made, batch_id or ""


def end(conn: redis.Redis, settings: Settings, vendor: str, made: list[str]) -> dict[str, int]:
    """The worker's ends on the fast path: status, rq's registry, the index's move."""
    counts = dict.fromkeys(("finished", "failed", "canceled", "started", "queued"), 0)
    with conn.pipeline(transaction=False) as pipe:
        for n, job_id in enumerate(made):
            job_type = TYPES[(n // BULK) % len(TYPES)]
            queue = JOB_TYPES[job_type].queue
            percent = n * 7 % 100  # spread over the whole time range, not in blocks
            found = next(((state, registry) for most, state, registry in ENDS if percent < most), None)
            if found is None and counts["started"] < 4:
                found = ("started", StartedJobRegistry)
            if found is None:
                counts["queued"] += 1
                continue
            state, registry = found
            counts[state] += 1
            pipe.hset(f"rq:job:{job_id}", "status", state)
            pipe.zadd(registry(queue, connection=conn).key, {job_id: time.time() + settings.failure_ttl})
            if state != "started":
                jobindex.place(pipe, vendor, job_id, job_type, state, settings.failure_ttl)
            if n % 1000 == 999:
                pipe.execute()
        pipe.execute()
    return counts


def timed(call, repeat: int) -> tuple[float, float, object]:
    seconds, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = call()
        seconds.append(time.perf_counter() - started)
    return min(seconds) * 1000, statistics.median(seconds) * 1000, out


def deep(jobs: JobQueue, flt: JobFilter, pages: int) -> float:
    """Mean milliseconds per page following the cursor from the first page."""
    after, started, done = None, time.perf_counter(), 0
    for _ in range(pages):
        found = Search(jobs.conn, flt, jobs.settings.failure_ttl).page(after, 20)
        done += 1
        after = found.after
        if after is None:
            break
    return (time.perf_counter() - started) * 1000 / done


def filters(marks: dict[str, float], batch_id: str, jobs: int) -> dict[str, JobFilter]:
    def iso(t: float) -> float:
        return datetime.fromtimestamp(t, UTC).timestamp()

    window = {"created_after": iso(marks["quarter"]), "created_before": iso(marks["three_quarters"])}
    acme = {"vendor": "acme"}
    middle = f"sku-{jobs // 2:06}"  # sku-050000 of 100,000: 100 ids start sku-0500, 10,000 sku-05
    hundred, many = middle[:-2] + "*", middle[:-4] + "*"
    return {
        "all of acme's": JobFilter(**acme),
        "state=finished": JobFilter(**acme, state="finished"),
        "state=failed": JobFilter(**acme, state="failed"),
        "state=queued": JobFilter(**acme, state="queued"),
        "state=canceled": JobFilter(**acme, state="canceled"),
        "state=started": JobFilter(**acme, state="started"),
        "type=remove-bg": JobFilter(**acme, type="remove-bg"),
        "state=failed type=crop-face": JobFilter(**acme, state="failed", type="crop-face"),
        f"record_id {middle}": JobFilter(**acme, record_id=middle),
        f"record_id {hundred}": JobFilter(**acme, record_id=hundred),
        f"record_id {many}": JobFilter(**acme, record_id=many),
        f"record_id {many} state=failed": JobFilter(**acme, record_id=many, state="failed"),
        "record_id sku-* (all: read by time)": JobFilter(**acme, record_id="sku-*"),
        "record_id sku-* state=failed": JobFilter(**acme, record_id="sku-*", state="failed"),
        "batch_id": JobFilter(**acme, batch_id=batch_id),
        "created window (middle half)": JobFilter(**acme, **window),
        "created window state=failed": JobFilter(**acme, **window, state="failed"),
        "operator: every vendor's state=failed": JobFilter(state="failed"),
        f"operator: every vendor's record_id {hundred}": JobFilter(record_id=hundred),
    }


def enqueue_cost(jobs: JobQueue, bulks: int, singles: int) -> dict[str, dict[str, float]]:
    """Median milliseconds of a 500-job and of a single-job enqueue, with the index and without it."""
    found: dict[str, dict[str, float]] = {"500 jobs": {}, "1 job": {}}
    for label, patch in (("with index", None), ("without index", mock.patch.object(jobindex, "add"))):
        with patch or ExitStack():
            for size, times, key in ((BULK, bulks, "500 jobs"), (1, singles, "1 job")):
                seconds = []
                for b in range(times):
                    started = time.perf_counter()
                    enqueue(jobs, "cost", 900_000 + b * size, size)
                    seconds.append(time.perf_counter() - started)
                found[key][label] = round(statistics.median(seconds) * 1000, 2)
    return found


def http(settings: Settings, jobs: int, repeat: int) -> dict[str, float]:
    """A few filters through the API itself (Flask's test client: the key's check, the limits, JSON)."""
    from imgproc.api import create_app

    app = create_app(settings)
    try:
        client = app.test_client()
        vendors = app.extensions["imgproc"].vendors
        acme, ops = {"X-API-Key": vendors.add("acme")}, {"X-API-Key": vendors.add("ops", operator=True)}
        many = f"sku-{jobs // 2:06}"[:-4] + "*"
        queries = {
            "acme: state=failed": (acme, {"state": "failed"}),
            f"acme: record_id {many}": (acme, {"record_id": many}),
            "acme: type=remove-bg, per_page=100": (acme, {"type": "remove-bg", "per_page": 100}),
            "operator: state=failed": (ops, {"state": "failed"}),
        }
        found = {}
        for label, (headers, query) in queries.items():
            best, median, answer = timed(
                lambda h=headers, q=query: client.get("/api/image-queue/jobs", query_string=q, headers=h),
                repeat,
            )
            assert answer.status_code == 200, answer.json
            found[label] = {
                "best_ms": round(best, 1),
                "median_ms": round(median, 1),
                "jobs": len(answer.json["jobs"]),
            }
        return found
    finally:
        app.extensions["imgproc"].engine.dispose()
        app.extensions["imgproc"].events.close()
        app.extensions["imgproc"].conn.connection_pool.disconnect()


def run(args) -> dict:
    results: dict = {"jobs": args.jobs, "uptime": os.getloadavg()}
    with ExitStack() as stack, TemporaryDirectory() as tmp:
        url = start_server(stack, Path(tmp))
        conn = redis.Redis.from_url(url)
        settings = Settings(redis_url=url, database_url=f"sqlite:///{tmp}/bench.db", max_bulk_items=BULK)
        jobs = JobQueue(conn, settings)
        started = time.perf_counter()
        marks: dict[str, float] = {}
        made = []
        for part in range(4):  # the time marks at each quarter, for the created window
            ids, batch_id = enqueue(jobs, "acme", part * args.jobs // 4, args.jobs // 4)
            made += ids
            marks[("quarter", "half", "three_quarters", "end")[part]] = time.time()
        enqueue(jobs, "beta", 0, 2_000)
        results["populate_s"] = round(time.perf_counter() - started, 1)
        results["states"] = end(conn, settings, "acme", made)
        results["redis_used_memory_mb"] = round(conn.info("memory")["used_memory"] / 2**20, 1)
        index = [k for k in conn.scan_iter("imgproc:jx:*", count=1000)]
        results["index_memory_mb"] = round(
            sum(conn.memory_usage(k, samples=0) or 0 for k in index) / 2**20, 1
        )
        results["filters"] = {}
        for label, flt in filters(marks, batch_id, args.jobs).items():
            best, median, page = timed(lambda f=flt: listing.search_jobs(jobs, f, per_page=20), args.repeat)
            count_ms, _, count = timed(lambda f=flt: Search(conn, f, settings.failure_ttl).count(), 1)
            results["filters"][label] = {
                "page_best_ms": round(best, 1),
                "page_median_ms": round(median, 1),
                "page_jobs": len(page["jobs"]),
                "deep_page_ms": round(deep(jobs, flt, args.pages), 1),
                "count": count,
                "count_ms": round(count_ms, 1),
            }
        results["http"] = http(settings.replace(storage_dir=f"{tmp}/media"), args.jobs, args.repeat)
        results["enqueue_ms"] = enqueue_cost(jobs, args.cost_bulks, args.cost_singles)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--cost-bulks", type=int, default=10, help="500-job enqueues timed each way")
    parser.add_argument("--cost-singles", type=int, default=300, help="single-job enqueues timed each way")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    results = run(args)
    width = max(len(label) for label in results["filters"])
    print(f"{results['jobs']:,} jobs of acme, states {results['states']}, made in {results['populate_s']} s")
    print(
        f"load average {results['uptime']}, Redis used memory {results['redis_used_memory_mb']} MB, "
        f"of which the index {results['index_memory_mb']} MB"
    )
    print(f"{'filter':{width}}  first page best/median ms  deep page ms  count  count ms")
    for label, r in results["filters"].items():
        print(
            f"{label:{width}}  {r['page_best_ms']:>8} / {r['page_median_ms']:<8} ({r['page_jobs']:>2} jobs)"
            f"  {r['deep_page_ms']:>8}  {r['count']:>6}  {r['count_ms']:>8}"
        )
    for label, r in results["http"].items():
        print(f"GET /jobs, {label}: {r['best_ms']} / {r['median_ms']} ms ({r['jobs']} jobs)")
    print(f"an enqueue, median ms: {results['enqueue_ms']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
