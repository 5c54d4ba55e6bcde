"""``make gpu-check``: imgproc on an NVIDIA GPU, measured in one run; without a GPU it says so and exits 0.

    1. provider and device: a worker's session asked for CUDA, the provider it really runs on
    2. the floor: ISNet alone at batch 1, 4, 8 and 16, fp32 and fp16 (images/s, GPU memory)
    3. masks: IoU of CUDA fp32 and CUDA fp16 against the CPU fp32 masks of the same photos
    4. the pipeline: embedded Redis, the API under gunicorn, 1 to 4 GPU workers with job slots,
       ``--photos`` photos of 2048x1536 from a local server, POST of the bulk to its last job's end

Everything lands in ``bench/results-gpu.json`` (``--out``). The targets of issue 13
are checked at the end and printed as verdicts, not asserted: a figure below its
target is a finding to report, not a crash.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from imgproc.config import ROOT, Settings

BATCHES = (1, 4, 8, 16)
MODEL = "isnet-general-use"
DEFAULT_OUT = ROOT / "bench" / "results-gpu.json"


def gpu_present() -> tuple[bool, str]:
    """Whether an NVIDIA GPU answers here, and its name (or why not)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False, "nvidia-smi is not on PATH (no NVIDIA driver)"
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nvidia-smi failed: {exc}"
    if done.returncode != 0 or not done.stdout.strip():
        return False, f"nvidia-smi found no GPU: {(done.stderr or done.stdout).strip()[:200]}"
    return True, done.stdout.strip().splitlines()[0]


def _smi(query: str) -> list[str]:
    try:
        done = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.strip().splitlines() if done.returncode == 0 else []


def gpu_memory_mib(pid: int | None = None) -> dict:
    """MiB of GPU memory: held by process ``pid`` (all processes when None), and used on the whole device.

    In a sandbox nvidia-smi may list no processes (another PID namespace): the device's figure stays.
    """
    used = []
    for line in _smi("--query-compute-apps=pid,used_memory"):
        p, _, mem = line.partition(", ")
        if mem.strip().isdigit() and (pid is None or p.strip() == str(pid)):
            used.append(int(mem))
    device = [int(v) for v in _smi("--query-gpu=memory.used") if v.strip().isdigit()]
    return {"processes": sum(used) if used else None, "device_used": device[0] if device else None}


def bench_photos(count: int = 3) -> list[bytes]:
    """JPEGs of 2048x1536: scikit-image's samples (as ``make bench`` makes them) resized."""
    from PIL import Image
    from skimage import data

    from bench.photos import _jpeg

    samples = [data.chelsea(), data.astronaut(), data.coffee()][:count]
    return [_jpeg(Image.fromarray(s).resize((2048, 1536), Image.Resampling.LANCZOS)) for s in samples]


def _rgb(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def _input(rgb: np.ndarray) -> np.ndarray:
    import cv2

    x = cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_AREA).astype(np.float32)
    x *= 1.0 / max(float(x.max()), 1e-6)
    x -= 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis])


def provider_check(device: str, log) -> dict:
    """A worker's remover asked for ``device`` (cuda): the provider its session really runs on."""
    from imgproc.processing.models import BackgroundRemover

    started = time.perf_counter()
    remover = BackgroundRemover(Settings(device=device, precision="fp16"))
    result = {
        "provider": remover.provider,
        "load_and_warmup_s": round(time.perf_counter() - started, 2),
        "cuda_options": dict(remover.providers[0][1]) if isinstance(remover.providers[0], tuple) else {},
    }
    log(
        f"provider: {result['provider']} (IMGPROC_DEVICE={device}; loaded and warm in "
        f"{result['load_and_warmup_s']} s)"
    )
    return result


def floor(photos: list[bytes], seconds: float, device: str, batches: tuple[int, ...], log) -> dict:
    """ISNet alone on ``device``: images/s and GPU memory at each batch size, fp32 and fp16."""
    import onnxruntime as ort

    from imgproc.processing import devices

    inputs = [_input(_rgb(p)) for p in photos]
    results: dict = {}
    for precision in ("fp32", "fp16"):
        path = Path(Settings().models_dir) / f"{MODEL}.{precision}.onnx"
        opts = ort.SessionOptions()
        opts.enable_mem_pattern = False
        providers = list(devices.place(device).providers)
        session = ort.InferenceSession(str(path), opts, providers=providers)
        devices.confirm(session.get_providers(), devices.place(device), path.name)  # cuda: CUDA or a refusal
        name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
        rows = {}
        for batch in batches:
            x = np.concatenate([inputs[i % len(inputs)] for i in range(batch)])
            for _ in range(2):  # cuDNN's exhaustive search runs on the first run of each shape
                session.run([name_out], {name_in: x})
            times = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or len(times) < (3 if seconds else 1):
                started = time.perf_counter()
                session.run([name_out], {name_in: x})
                times.append(time.perf_counter() - started)
            median = statistics.median(times)
            rows[str(batch)] = {
                "run_s": round(median, 5),
                "images_per_s": round(batch / median, 2),
                "runs": len(times),
                "gpu_memory_mib": gpu_memory_mib(os.getpid()),
            }
            log(
                f"floor {precision} batch {batch}: {batch / median:.1f} images/s ({median * 1000:.1f} ms/run)"
            )
        results[precision] = rows
        del session
    return results


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a >= 128, b >= 128
    return round(float((a & b).sum() / max(1, (a | b).sum())), 5)


def masks(photos: list[bytes], device: str, log) -> dict:
    """Masks of CUDA fp32 and fp16 against CPU fp32, through the worker's own pre- and post-processing."""
    from imgproc.processing.models import BackgroundRemover

    rgbs = [_rgb(p) for p in photos]
    cpu = BackgroundRemover(Settings(device="cpu", precision="fp32", threads=os.cpu_count() or 1))
    reference = [cpu.mask(rgb, MODEL) for rgb in rgbs]
    del cpu
    result = {}
    for precision in ("fp32", "fp16"):
        gpu = BackgroundRemover(Settings(device=device, precision=precision))
        ious = [_iou(gpu.mask(rgb, MODEL), ref) for rgb, ref in zip(rgbs, reference, strict=True)]
        result[f"cuda_{precision}_vs_cpu_fp32"] = {"iou": ious, "min": min(ious)}
        log(f"masks: CUDA {precision} vs CPU fp32, IoU {ious}")
        del gpu
    return result


def pipeline(
    jpeg: bytes,
    count: int,
    worker_counts: list[int],
    batch: int,
    precision: str,
    device: str,
    log,
    results: dict | None = None,
    saved=lambda: None,
) -> dict:
    """The whole path: ``count`` photos in one bulk, for each number of GPU workers (into ``results``)."""
    from imgproc.queueing import connect
    from imgproc.testing import LocalStack, PhotoServer, local_env, wait_for

    var = ROOT / "var" / "gpu-check"
    shutil.rmtree(var, ignore_errors=True)
    env = {
        **local_env(var),
        "IMGPROC_DEVICE": device,
        "IMGPROC_PRECISION": precision,
        "IMGPROC_BATCH": str(batch),
        "IMGPROC_METRICS": "0",
    }
    server = PhotoServer(lambda path: jpeg if path.startswith("/p/") else None, keep_alive=True)
    results = {} if results is None else results
    try:
        with LocalStack(var, env) as stack:
            key = stack.add_vendor("gpu-check")
            stack.start_api(processes=4, threads=4)
            client = stack.client(key, timeout=60)
            stack.callback(client.close)
            conn = connect(stack.redis_url)
            stack.callback(conn.close)
            for n in worker_counts:
                procs = stack.start_workers(n, "bg-removal")
                # A worker with job slots registers one rq worker per slot: <name>.slot0, .slot1, ...
                slot = ".slot0" if batch > 1 else ""
                wait_for(
                    lambda procs=procs, slot=slot: all(
                        conn.exists(f"rq:worker:{p.name}{slot}") for p in procs
                    ),
                    300,
                    f"{n} GPU worker(s) to load their models",
                    procs,
                )
                items = [
                    {"record_id": f"w{n}-{i}", "image_url": server.url(f"/p/{n}/{i}.jpg")}
                    for i in range(count)
                ]
                posted = time.time()
                bulk = client.bulk("remove-bg", items)
                while (view := client.batch(bulk.id)).done < view.total:
                    time.sleep(0.2)
                from rq.job import Job

                jobs = Job.fetch_many(bulk.job_ids, connection=conn)
                seconds = max(j.ended_at.timestamp() for j in jobs) - posted
                results[str(n)] = {
                    "workers": n,
                    "batch": batch,
                    "precision": precision,
                    "photos": count,
                    "finished": view.counts.get("finished", 0),
                    "seconds": round(seconds, 2),
                    "images_per_s": round(count / seconds, 1),
                    "gpu_memory_mib": gpu_memory_mib(),
                }
                log(
                    f"pipeline {n} worker(s), {batch} slots: {count / seconds:.1f} images/s ({seconds:.1f} s)"
                )
                saved()
                stack.stop(procs)
    finally:
        server.close()
    return results


def verdicts(r: dict) -> dict:
    """Issue 13's targets against this run's figures."""
    out = {"cuda_active": r["provider"]["provider"] == "CUDAExecutionProvider"}
    fl = r.get("floor", {}).get("fp16") or r.get("floor", {}).get("fp32")
    if fl:
        if "8" in fl:
            out["batch8_vs_batch1"] = round(fl["8"]["images_per_s"] / fl["1"]["images_per_s"], 2)
        best = max(row["images_per_s"] for prec in r["floor"].values() for row in prec.values())
        if r.get("pipeline"):
            e2e = max(row["images_per_s"] for row in r["pipeline"].values())
            out["pipeline_vs_floor"] = round(e2e / best, 2)
    if r.get("masks"):
        out["min_iou_vs_cpu_fp32"] = min(v["min"] for v in r["masks"].values())
    cpu = ROOT / "bench" / "results.json"  # `make bench` on this checkout's machine, if it ran
    if r.get("pipeline") and cpu.is_file():
        measured = json.loads(cpu.read_text()).get("throughput", {}).get("n_workers", {})
        if measured.get("size") == "2048x1536" and measured.get("images_per_min"):
            e2e = max(row["images_per_s"] for row in r["pipeline"].values())
            out["pipeline_vs_make_bench_cpu"] = round(e2e * 60 / measured["images_per_min"], 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--photos", type=int, default=200, help="photos in each pipeline run (default 200)")
    parser.add_argument("--workers", default="1,2,4", help="GPU worker counts of the pipeline runs")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per floor batch size")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument(
        "--cpu-rehearsal",
        action="store_true",
        help="run every step on the CPU at a tiny size, to prove the script before a GPU machine is lent",
    )
    args = parser.parse_args(argv)
    device, batches = ("cpu", (1, 2)) if args.cpu_rehearsal else ("cuda", BATCHES)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    present, what = gpu_present()
    if args.cpu_rehearsal:
        present, what = True, f"none, a CPU rehearsal ({what})"
    if not present:
        print(f"no GPU here: {what}. Nothing measured; make gpu-check needs an NVIDIA GPU (README, GPU).")
        return 0
    import onnxruntime as ort

    started = time.monotonic()
    r: dict = {"device": what, "onnxruntime": ort.__version__, "cores": os.cpu_count()}
    log(f"GPU: {what}; onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")

    def save() -> None:  # after every phase: a run cut short by its time limit still leaves its figures
        r["seconds"] = round(time.monotonic() - started, 1)
        args.out.write_text(json.dumps(r, indent=2) + "\n")

    r["provider"] = provider_check(device, log)
    save()
    photos = bench_photos()
    r["floor"] = floor(photos, args.seconds, device, batches, log)
    save()
    r["masks"] = masks(photos, device, log)
    save()
    fp16_ok = r["masks"]["cuda_fp16_vs_cpu_fp32"]["min"] >= 0.99
    precision = "fp16" if fp16_ok else "fp32"
    rows = r["floor"][precision]
    batch = int(max(rows, key=lambda b: rows[b]["images_per_s"]))
    if not args.skip_pipeline:
        counts = [int(n) for n in args.workers.split(",")]
        r["pipeline"] = {}
        pipeline(photos[0], args.photos, counts, batch, precision, device, log, r["pipeline"], save)
    r["verdicts"] = verdicts(r)
    save()
    log(f"verdicts: {r['verdicts']}; wrote {args.out} in {r['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
