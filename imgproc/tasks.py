"""The RQ job functions, thin: load the input, run the operation, upload, write back.

They run only on an imgproc worker (``imgproc.workers``), which hands each job
the process's ``Runtime`` (models, fetcher, storage, records) before running it.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from rq import get_current_job
from rq.job import Job

from . import operations
from .errors import PermanentError
from .queue import KEY_UPLOAD

#: Progress of each stage, 0-100, as API.md lists them.
STAGES = {"fetching": 10, "inference": 30, "uploading": 80, "saving": 90, "done": 100}
SUFFIX = {"remove-bg": "bg", "crop-face": "face", "process-image": "img"}


def remove_bg(payload: dict) -> dict:
    """Job: background removal."""
    return _run(payload, lambda rt, data: operations.remove_background(
        data, payload["options"], rt.remover, max_pixels=rt.settings.max_image_pixels,
        png_level=rt.settings.png_compress_level))


def crop_face(payload: dict) -> dict:
    """Job: face crop."""
    return _run(payload, lambda rt, data: operations.crop_face(
        data, payload["options"], rt.detector, rt.remover, max_pixels=rt.settings.max_image_pixels,
        png_level=rt.settings.png_compress_level, bg_model=rt.settings.bg_model))


def process_image(payload: dict) -> dict:
    """Job: light processing (resize, convert, thumbnail)."""
    return _run(payload, lambda rt, data: operations.process_image(
        data, payload["options"], max_pixels=rt.settings.max_image_pixels,
        png_level=rt.settings.png_compress_level))


#: A stage reached sooner than this after the last one saved stays in memory until the next save:
#: nobody can poll that fast, and each save is a Redis round trip (a light job has five stages).
SAVE_EVERY = 0.1


def _stage(job: Job, stage: str, force: bool = False) -> None:
    # Progress never goes down, not even when a retry starts over.
    job.meta["stage"] = stage
    job.meta["progress"] = max(job.meta.get("progress", 0), STAGES[stage])
    now = time.monotonic()
    if force or now - job._stage_saved >= SAVE_EVERY:
        job.save_meta()
        job._stage_saved = now


def storage_key(job: Job, payload: dict, fmt: str) -> str:
    """Where a job's result goes: the same key on every attempt, unguessable through the job id."""
    record = re.sub(r"[^A-Za-z0-9._-]+", "-", payload["record_id"]).strip(".-")[:80] or "record"
    return f"{payload['vendor']}/{job.id}/{record}-{SUFFIX[payload['type']]}.{fmt}"


def _run(payload: dict, operation: Callable[[Any, bytes], operations.Output]) -> dict:
    job = get_current_job()
    runtime = getattr(job, "runtime", None)
    if runtime is None:
        raise PermanentError("internal", "imgproc jobs run only on imgproc workers (python worker.py)")
    started = time.perf_counter()
    job._stage_saved = time.monotonic()  # rq has just saved the job: stages before 100 ms stay in memory
    job.meta["attempts"] = job.meta.get("attempts", 0) + 1
    job.meta.pop("error", None)
    output = job.meta.get("output")
    if output is None:
        _stage(job, "fetching")
        data = _input(job, payload, runtime)
        _stage(job, "inference", force=payload["type"] != "process-image")  # the long one, when there is a model
        out = operation(runtime, data)
        _stage(job, "uploading")
        key = storage_key(job, payload, out.format)
        url = runtime.storage.put(key, out.data, out.content_type)
        output = {"url": url, "width": out.width, "height": out.height, "format": out.format,
                  "bytes": len(out.data), **out.extra}
        # Kept with the job: a retry after a failed write-back reuses the upload (the failure's
        # handler saves the meta, output included).
        job.meta["output"] = output
    if not job.meta.get("saved"):
        _stage(job, "saving")
        runtime.records.save_result(payload["vendor"], payload["record_id"], payload["type"], output["url"],
                                    original_url=payload.get("image_url"))
        job.meta["saved"] = True  # a retry from here on (Redis hiccup at the end) writes nothing again
    _stage(job, "done", force=True)
    if payload.get("upload"):
        runtime.conn.delete(KEY_UPLOAD.format(job.id))
    return {**output, "record_id": payload["record_id"],
            "duration_ms": round((time.perf_counter() - started) * 1000)}


def _input(job: Job, payload: dict, runtime) -> bytes:
    if payload.get("upload"):
        data = runtime.conn.get(KEY_UPLOAD.format(job.id))
        if data is None:
            raise PermanentError("fetch_failed", "the uploaded image has expired")
        return data
    return runtime.fetcher.fetch(payload["image_url"])
