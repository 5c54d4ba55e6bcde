"""The phases that take imgproc's whole path: HTTP enqueue, Redis, workers, storage, records on SQLite.

Each phase gets the run's ``Bench`` (``bench/run.py``): its ``LocalStack``,
an ``imgproc.client.Client`` with the bench vendor's key, the served ``Photos``,
the parsed arguments and a ``log`` function.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from imgproc.client import Client, Job
from imgproc.jobtypes import QUEUE_BG, QUEUE_LIGHT, QUEUES
from imgproc.testing import StackError, free_port, wait_for

API = "/api/image-queue"
DONE = {"finished", "failed", "canceled", "stopped"}
LIGHT_OPTIONS = {"resize": [64, 64]}
MIB = 2**20


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (the value below which ``q`` percent of ``values`` fall)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def wait_job(client: Client, job_id: str, poll: float, timeout: float = 600) -> Job:
    """Poll a job every ``poll`` seconds until it has ended (not its event stream: the figures
    were measured polling); its last view."""
    return wait_for(
        lambda: (job := client.job(job_id)).state in DONE and job, timeout, f"job {job_id}", interval=poll
    )


def _finished(job: Job) -> Job:
    if job.state != "finished":
        raise StackError(f"job {job.id} ended {job.state}: {job.error}")
    return job


def last_ended(conn, job_ids: list[str]) -> float:
    """When the last of the jobs ended (epoch seconds), from rq's own ``ended_at`` of each."""
    from rq.job import Job

    return max(job.ended_at.timestamp() for job in Job.fetch_many(job_ids, connection=conn))


def run_bulk(b, job_type: str, items: list[dict], timeout: float = 900) -> float:
    """POST one bulk, poll its batch until every job has ended.

    Seconds from just before the POST to the last end.

    The end is the last job's own ``ended_at``, so the figure does not depend on
    the poll interval, and polling can stay slow enough not to compete with the
    workers for the cores.
    """
    posted = time.time()
    batch = b.client.bulk(job_type, items)
    view = wait_for(
        lambda: (view := b.client.batch(batch.id)).done == view.total and view,
        timeout,
        f"bulk {job_type} of {len(items)}",
        interval=b.args.bulk_poll,
    )
    if view.counts.get("finished") != view.total:
        bad = next(j for j in view.jobs if j["state"] != "finished")
        _finished(b.client.job(bad["job_id"]))
    return last_ended(b.redis, batch.job_ids) - posted


def workers(b, n: int, queues=(QUEUE_BG,), **env: str):
    """Start ``n`` workers (cores ÷ n threads each) and wait until they have loaded their models."""
    procs = b.stack.start_workers(n, queues, **env)
    b.stack.wait_workers(procs)
    return procs


def replicas(b, n: int, queues=(QUEUE_BG,)) -> list:
    """``n`` workers with the defaults (no IMGPROC_WORKERS_PER_HOST), each started once the last is ready.

    Returns once every one has counted all ``n`` (its log says so, or it started among them).
    """
    procs = []
    for _ in range(n):
        proc = b.stack.start_workers(1, queues, IMGPROC_WORKERS_PER_HOST="0")[0]
        b.stack.wait_workers([proc])
        procs.append(proc)
    counted = f"{n} inference worker(s) on this host"

    def all_counted() -> bool:
        logs = [p.log_path.read_text(errors="replace") for p in procs[:-1]]
        return all(counted in text for text in logs)

    wait_for(all_counted, 60, f"{n} replicas counting each other", procs)
    return procs


def e2e(b, sizes: list[str], floor_s: float) -> dict:
    """Per size: median seconds from just before the POST to the job's own ``ended_at``, one worker.

    Polling every 10 ms through gunicorn took CPU from the worker's two
    inference threads (measured: a 512x512 job's own duration 1020 ms instead
    of 905 at a 200 ms poll), so the end comes from rq's timestamp and the
    poll only learns that it came.
    """
    results = {}
    for size in sizes:
        runs, durations = [], []
        for i in range(b.args.e2e_warmup + b.args.e2e_runs):
            started = time.time()
            job = b.client.submit("remove-bg", b.photos.url(size), record_id=f"e2e-{size}-{i}")
            view = _finished(wait_job(b.client, job.id, b.args.poll_ms / 1000))
            elapsed = last_ended(b.redis, [job.id]) - started
            if i >= b.args.e2e_warmup:
                runs.append(elapsed)
                durations.append(view.result.duration_ms)
        median = statistics.median(runs)
        results[size] = {
            "e2e_s": round(median, 4),
            "runs_s": [round(r, 4) for r in runs],
            "job_duration_ms": durations,
            "ratio": round(median / floor_s, 3),
        }
        b.log(
            f"e2e {size}: {median:.2f} s (runs {', '.join(f'{r:.2f}' for r in runs)}; job's own "
            f"duration_ms {durations}), {median / floor_s:.2f} x the floor"
        )
    return results


def throughput(b, size: str, count: int, label: str) -> dict:
    """Images per minute of one bulk of ``count`` photos of ``size``, from the POST to the last finished."""
    seconds = run_bulk(b, "remove-bg", b.photos.items(size, count, f"tp-{label}-{size}"))
    per_min = count / seconds * 60
    b.log(f"throughput {label}, {count} x {size}: {seconds:.1f} s = {per_min:.1f} images/min")
    return {"size": size, "photos": count, "seconds": round(seconds, 3), "images_per_min": round(per_min, 2)}


def light(b, count: int) -> dict:
    """Light jobs (64x64 resize of a small photo) per second, POST to all finished, 2 light workers.

    Also with the workers' metrics off (``IMGPROC_METRICS=0``), to show what recording them costs.
    """
    seconds = {}
    for label, metrics in (("metrics_off", "0"), ("metrics_on", "1")):
        procs = workers(b, 2, (QUEUE_LIGHT,), IMGPROC_METRICS=metrics)
        try:
            items = b.photos.items("small", count, f"light-{label}", LIGHT_OPTIONS)
            seconds[label] = run_bulk(b, "process-image", items)
        finally:
            b.stack.stop(procs)
    on, off = seconds["metrics_on"], seconds["metrics_off"]
    b.log(
        f"light jobs: {count} in {on:.2f} s = {count / on:.0f} jobs/s through imgproc (2 workers); "
        f"with the workers' metrics off {count / off:.0f} jobs/s"
    )
    return {
        "jobs": count,
        "workers": 2,
        "seconds": round(on, 3),
        "jobs_per_s": round(count / on, 1),
        "jobs_per_s_metrics_off": round(count / off, 1),
        "metrics_cost": round(1 - off / on, 3),
    }


def _latencies(b, clients: int, requests: int) -> list[float]:
    """Enqueue latency in ms of ``clients`` closed-loop clients, ``requests`` each, started together."""
    barrier = threading.Barrier(clients)
    results: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client_loop(n: int) -> None:
        post = _poster(b.stack.api, b.key)
        mine = []
        try:
            barrier.wait()
            for i in range(requests):
                body = {
                    "record_id": f"lat-{clients}-{n}-{i}",
                    "image_url": b.photos.url("small"),
                    "options": LIGHT_OPTIONS,
                }
                started = time.perf_counter()
                status, answer = post(f"{API}/process-image-queue", body)
                mine.append((time.perf_counter() - started) * 1000)
                if status != 202:
                    raise StackError(f"enqueue answered {status}: {answer[:300]!r}")
        except Exception as exc:  # reported below: a thread's error must not vanish
            errors.append(str(exc))
        finally:
            post.close()
            with lock:
                results.extend(mine)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise StackError(f"{len(errors)} client(s) failed: {errors[0]}")
    return results


class _poster:
    """POST JSON over one kept-alive ``http.client`` connection: ``(status, body)``.

    Not ``imgproc.client.Client``: it reads each job back after its enqueue and retries, where this
    measures one POST. Nor httpx: these closed-loop threads share the API's 2 cores, and the CPU a
    heavier client spends per request would move the figures away from the earlier runs'.
    """

    def __init__(self, base: str, key: str):
        parts = urlsplit(base)
        self.address = (parts.hostname, parts.port)
        self.headers = {"X-API-Key": key, "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def __call__(self, path: str, body: dict) -> tuple[int, bytes]:
        while True:
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.address, timeout=60)
            try:
                self.conn.request("POST", path, body=json.dumps(body), headers=self.headers)
                response = self.conn.getresponse()
                answer = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if not reused:
                    raise
                continue  # a kept-alive connection the server had dropped before reading: once more
            except BaseException:
                self.close()  # never reuse a connection left halfway through a request
                raise
            if response.getheader("Connection", "").lower() == "close":
                self.close()  # gunicorn's sync workers close after each answer
            return response.status, answer

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _wrk(b, clients: int, seconds: float, base: str | None = None) -> dict:
    """Run wrk (closed loop, ``clients`` connections) for ``seconds`` on ``base`` (the API); figures in ms."""
    script = Path(__file__).with_name("enqueue.lua")
    env = dict(
        os.environ,
        IMGPROC_WRK_KEY=b.key,
        IMGPROC_WRK_PATH=f"{API}/process-image-queue",
        IMGPROC_WRK_URL=b.photos.url("small"),
    )
    threads = min(clients, 2)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(clients),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base or b.stack.api,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    line = next((row for row in out.stdout.splitlines() if row.startswith("WRK_RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise StackError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    r = json.loads(line.removeprefix("WRK_RESULT "))
    errors = r["non_202"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    if errors:
        raise StackError(f"wrk: {errors} of {r['requests']} requests failed: {r}")
    return {
        "clients": clients,
        "generator": "wrk",
        "requests": r["requests"],
        "per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": round(r["p50_us"] / 1000, 2),
        "p99_ms": round(r["p99_us"] / 1000, 2),
        "max_ms": round(r["max_us"] / 1000, 2),
    }


def enqueue_latency(b) -> dict:
    """p50/p99 of single enqueues against gunicorn, with 1 client and with many concurrent clients.

    wrk when it is installed (a C load generator leaves the 2 cores to the API);
    else closed-loop Python client threads, which take CPU from the API and
    make the figure worse.
    """
    runs = ((1, b.args.latency_requests), (b.args.latency_clients, b.args.latency_per_client))
    results = {}
    if shutil.which("wrk") and not b.args.python_clients:
        for clients, _ in runs:
            _wrk(b, clients, 1)  # warm-up: every gunicorn process has connected to Redis
            r = results[f"{clients}_clients"] = _wrk(b, clients, b.args.latency_seconds)
            b.log(
                f"enqueue latency (wrk), {clients} client(s) for {b.args.latency_seconds:g} s: "
                f"{r['requests']} "
                f"requests, {r['per_s']:.0f}/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
            )
        return results
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # a client thread whose answer came should not wait 5 ms for the GIL
    try:
        measured = [(clients, requests, _latencies(b, clients, requests)) for clients, requests in runs]
    finally:
        sys.setswitchinterval(switch)
    for clients, requests, ms in measured:
        results[f"{clients}_clients"] = {
            "clients": clients,
            "generator": "python",
            "requests": len(ms),
            "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2),
        }
        b.log(
            f"enqueue latency (Python clients), {clients} client(s) x {requests}: "
            f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms"
        )
    return results


def enqueue_ceiling(b, many: dict) -> dict:
    """A bare Flask view (bench/bareflask.py) under the same gunicorn and wrk as ``many``: the ceiling.

    Returns both rates, each per core, and their ratio (the share of this stack's ceiling the API reaches).
    """
    api = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "gunicorn", "-b", api.removeprefix("http://")]
    command += ["-w", str(b.args.api_processes), "bench.bareflask:app"]
    proc = b.stack.spawn("bareflask", command, b.stack.env)
    try:
        health = lambda: httpx.get(f"{api}/health", timeout=5).status_code == 200  # noqa: E731
        wait_for(health, 60, "the bare Flask view", [proc], ignore=(httpx.TransportError,))
        _wrk(b, many["clients"], 1, base=api)
        bare = _wrk(b, many["clients"], b.args.latency_seconds, base=api)
    finally:
        b.stack.stop([proc])
    cores = os.cpu_count() or 1
    r = {
        "bare_flask": bare,
        "api_per_s_per_core": round(many["per_s"] / cores, 1),
        "bare_per_s_per_core": round(bare["per_s"] / cores, 1),
        "ratio": round(many["per_s"] / bare["per_s"], 3),
    }
    b.log(
        f"bare Flask view, same gunicorn, {many['clients']} clients: {bare['per_s']:.0f}/s, p50 "
        f"{bare['p50_ms']:.1f} ms, p99 {bare['p99_ms']:.1f} ms; the API reaches {r['ratio']:.2f}x of it"
    )
    return r


def _load_times(log_path) -> dict:
    text = log_path.read_text(errors="replace")
    loaded = re.search(r"loaded \S+ on \S+ in ([\d.]+)\s*s", text)
    ready = re.search(r"ready in ([\d.]+)\s*s", text)
    return {
        "worker_model_load_s": float(loaded.group(1)) if loaded else None,
        "worker_ready_s": float(ready.group(1)) if ready else None,
    }


def memory(b, counts: tuple[int, int, int]) -> dict:
    """RSS of one worker on all queues after job 1 (2048x1536), ``counts[1]`` (512x512), ``counts[2]``."""
    import psutil

    first, middle, last = counts
    proc = workers(b, 1, QUEUES)[0]
    try:
        rss = psutil.Process(proc.pid).memory_info
        job = b.client.submit("remove-bg", b.photos.url("2048x1536"), record_id="mem-1")
        _finished(wait_job(b.client, job.id, b.args.bulk_poll))
        after = {str(first): rss().rss}
        run_bulk(b, "remove-bg", b.photos.items("512x512", middle - first, "mem-bg"))
        after[str(middle)] = rss().rss
        run_bulk(b, "process-image", b.photos.items("small", last - middle, "mem-light", LIGHT_OPTIONS))
        after[str(last)] = rss().rss
    finally:
        b.stack.stop([proc])
    mib = {k: round(v / MIB, 1) for k, v in after.items()}
    b.log("worker RSS after " + ", ".join(f"{k} jobs: {v:.0f} MiB" for k, v in mib.items()))
    return {
        "rss_mib": mib,
        "growth_mib": round(mib[str(last)] - mib[str(middle)], 1),
        **_load_times(proc.log_path),
    }
