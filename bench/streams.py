"""Open event streams against enqueue latency: ``python -m bench.streams``.

One API process under ``deploy/gunicorn.conf.py`` (gthread). For each count
of open streams (``/job/<id>/events`` of jobs that stay queued: no worker
runs, so every stream stays open and waits on Redis), all of one vendor's (its
cap raised above the count), the enqueue latency of another vendor's
closed-loop clients (wrk when installed, else Python threads) is measured with
the streams open; the table gives p50/p99, p99 as a ratio to no streams,
Redis' connected clients, and the CPU the API process spends on the open
streams alone (nothing else sent meanwhile), which a loaded machine does not
blur as it does latencies.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.jobs import API, LIGHT_OPTIONS, _latencies, _wrk
from bench.photos import SMALL, Photos
from imgproc.config import ROOT
from imgproc.testing import LocalStack, PhotoServer, StackError, local_env


def open_streams(base: str, key: str, job_ids: list[str]) -> list[socket.socket]:
    """One raw connection per job, each past its first event (the stream is open and waiting)."""
    host, port = base.removeprefix("http://").split(":")
    sockets = []
    for job_id in job_ids:
        sock = socket.create_connection((host, int(port)), timeout=30)
        request = f"GET {API}/job/{job_id}/events HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n\r\n"
        sock.sendall(request.encode())
        seen = b""
        while b"event: state" not in seen:
            chunk = sock.recv(4096)
            if not chunk:
                raise StackError(f"stream of {job_id} closed: {seen[:200]!r}")
            seen += chunk
        sockets.append(sock)
    return sockets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="0,50,100,200", help="counts of open streams, comma-separated")
    parser.add_argument("--threads", type=int, default=256, help="gunicorn threads of the one API process")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop enqueue clients")
    parser.add_argument("--seconds", type=float, default=5, help="seconds of each wrk run")
    parser.add_argument("--requests", type=int, default=100, help="requests per Python client (no wrk)")
    parser.add_argument("--idle", type=float, default=10, help="seconds the streams' own CPU is measured")
    parser.add_argument("--var", type=Path, default=ROOT / "var" / "bench-streams")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.streams.split(",")]
    photos = Photos([SMALL])
    rows = []
    shutil.rmtree(args.var, ignore_errors=True)  # a fresh database and vendor every run
    server = PhotoServer(photos.resolve, keep_alive=True)
    photos.base = server.base
    env = {**local_env(args.var), "IMGPROC_MAX_STREAMS_PER_VENDOR": str(max(counts) + 1)}
    with LocalStack(args.var, env) as stack:
        stack.callback(server.close)
        api = stack.start_api(
            processes=1, threads=args.threads, config=str(ROOT / "deploy" / "gunicorn.conf.py")
        )
        key, streamer = stack.add_vendor("bench"), stack.add_vendor("streamer")
        client = stack.client(streamer)
        b = SimpleNamespace(stack=stack, key=key, photos=photos)
        conn = stack.redis()
        stack.callback(conn.close)
        (process,) = psutil.Process(stack.procs[0].pid).children()  # gunicorn's one worker
        use_wrk = shutil.which("wrk") is not None
        opened: list[socket.socket] = []
        try:
            for count in counts:
                ids = [
                    client.submit(
                        "process-image", photos.url(SMALL), record_id=f"s{len(opened) + i}", **LIGHT_OPTIONS
                    ).id
                    for i in range(count - len(opened))
                ]
                opened += open_streams(api, streamer, ids)
                time.sleep(1)
                # What the open streams cost by themselves: the process's CPU with nothing else to do.
                before = sum(process.cpu_times()[:2])
                time.sleep(args.idle)
                idle_cpu = (sum(process.cpu_times()[:2]) - before) / args.idle
                if use_wrk:
                    _wrk(b, args.clients, 1)  # warm-up
                    r = _wrk(b, args.clients, args.seconds)
                    p50, p99, per_s = r["p50_ms"], r["p99_ms"], r["per_s"]
                else:
                    ms = sorted(_latencies(b, args.clients, args.requests))
                    p50, p99 = ms[len(ms) // 2], ms[int(len(ms) * 0.99) - 1]
                    per_s = None
                clients = conn.info("clients")["connected_clients"]
                rows.append(
                    {
                        "streams": len(opened),
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "per_s": per_s,
                        "redis_clients": clients,
                        "idle_cpu": idle_cpu,
                    }
                )
                base = rows[0]["p99_ms"]
                print(
                    f"{len(opened):5d} open streams: another vendor's enqueue p50 {p50:.1f} ms, "
                    f"p99 {p99:.1f} ms ({p99 / base:.2f}x no streams){f', {per_s:.0f}/s' if per_s else ''}; "
                    f"Redis clients {clients}; the streams alone: {idle_cpu:.1%} of a core",
                    flush=True,
                )
        finally:
            for sock in opened:
                sock.close()
            client.close()
    print(json.dumps({"generator": "wrk" if use_wrk else "python", "clients": args.clients, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
