"""The floor: ``session.run`` of the default model on one preprocessed photo, a worker's thread settings."""

from __future__ import annotations

import gc
import statistics
import time

import numpy as np


def isnet_input(jpeg: bytes) -> np.ndarray:
    """A photo as ISNet's 1x3x1024x1024 float32 input (rembg's normalisation: over its max, minus 0.5)."""
    import io

    from PIL import Image

    rgb = np.asarray(
        Image.open(io.BytesIO(jpeg)).convert("RGB").resize((1024, 1024), Image.Resampling.BILINEAR),
        dtype=np.float32,
    )
    x = rgb / max(float(rgb.max()), 1e-6) - 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis])


def measure_floor(settings, jpeg: bytes, runs: int, warmup: int) -> dict:
    """Build the session exactly as a worker does for ``settings``; median seconds of ``runs`` runs."""
    from imgproc.processing.models import BackgroundRemover, runtime_session

    remover = BackgroundRemover(settings)
    try:
        inner = runtime_session(remover.sessions[settings.bg_model])
        feed = {inner.get_inputs()[0].name: isnet_input(jpeg)}
        for _ in range(warmup):
            inner.run(None, feed)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            inner.run(None, feed)
            times.append(time.perf_counter() - started)
        return {
            "threads": settings.intra_op_threads,
            "workers_per_host": settings.workers_per_host,
            "floor_s": round(statistics.median(times), 4),
            "runs_s": [round(t, 4) for t in times],
            "load_s": round(remover.load_seconds[settings.bg_model], 3),
        }
    finally:
        del remover
        gc.collect()  # the next session (or the workers) should not share the machine with this one's arena


def _floor_in_process(args) -> dict:
    settings, jpeg, runs, warmup, start = args
    start.wait()  # every process loads first, then all run together
    return measure_floor(settings, jpeg, runs, warmup)


def measure_floor_concurrent(settings, jpeg: bytes, runs: int, warmup: int, processes: int) -> dict:
    """The floor of ``processes`` workers: as many sessions running at once, each in its own process.

    N sessions on N cores share the memory bandwidth and the caches, so one
    session measured alone runs faster than each of N side by side; the
    floor of N workers is what N raw sessions achieve together.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # never fork a process that holds a session
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(processes) as pool:
            pending = pool.map_async(_floor_in_process, [(settings, jpeg, runs, warmup, start)] * processes)
            time.sleep(0.5)
            start.set()
            results = pending.get(timeout=600)
    medians = [r["floor_s"] for r in results]
    return {
        **results[0],
        "floor_s": round(statistics.median(medians), 4),
        "per_process_s": medians,
        "runs_s": [t for r in results for t in r["runs_s"]],
    }
