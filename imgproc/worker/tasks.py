"""The one RQ job function, thin: load the input, run the operation, upload, write back.

It runs only on an imgproc worker (``imgproc.worker``), which makes its
``Runtime`` current around every job. The job's type (``imgproc.jobtypes``)
names the operation; everything else is the same for every type.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from rq import get_current_job
from rq.job import Job

from imgproc.adapters.writeback import FINAL
from imgproc.errors import JobError, PermanentError, TransientError
from imgproc.jobtypes import Payload
from imgproc.processing import operations
from imgproc.queueing import uploads
from imgproc.queueing.plain import plain
from imgproc.queueing.views import absolute_url

from . import runtime as runtimes
from .stages import Stages

log = logging.getLogger("imgproc.worker")


def storage_key(job: Job, payload: Payload, fmt: str) -> str:
    """Where a job's result goes: the same key on every attempt, unguessable through the job id."""
    record = re.sub(r"[^A-Za-z0-9._-]+", "-", payload.record_id).strip(".-")[:80] or "record"
    return f"{payload.vendor}/{job.id}/{record}-{payload.job_type.suffix}.{fmt}"


def run(data: dict) -> dict:
    """Job: any job type, as its stored payload (``Payload.asdict``) says."""
    job = get_current_job()
    runtime = runtimes.current.get(None)
    if runtime is None:
        raise PermanentError("imgproc jobs run only on imgproc workers (python worker.py)", code="internal")
    payload = Payload.decode(data)
    job_type = payload.job_type
    started = time.perf_counter()
    stages = job.stages
    state = stages.state
    state.begin_attempt()
    output = state.output
    timer = _StageTimer(runtime, job_type.name)
    if output is None:
        stages.reach("fetching")
        photo = _input(job, payload, runtime)
        timer.done("fetch")
        stages.reach("inference", force=bool(job_type.models))  # the long one, when there is a model
        operation = getattr(operations, job_type.operation)
        # The defaults under the stored options: a job queued before an option existed still runs.
        options = {**job_type.defaults(runtime.settings), **payload.options}
        out = operation(photo, options, runtime.tools)
        # Stored with the job and read back as JSON by every reader: JSON's own types only (a NumPy
        # bool here once made every status read of its job answer 500); anything else fails the job.
        extra = plain(out.extra)
        timer.done("inference", minus=out.encode_seconds + out.layout_seconds)
        timer.record("encode", out.encode_seconds)
        if out.layout_seconds:
            timer.record("layout", out.layout_seconds)
        if extra.get("review"):  # a cut-out whose mask is doubtful: for a person to look at
            runtime.metrics.inc("imgproc_results_review_total", type=job_type.name)
        runtime.metrics.inc("imgproc_megapixels_processed_total", out.source_pixels / 1e6, type=job_type.name)
        # For the operator's page, counted when the job is done (in the done stage's round trip).
        state.megapixels = out.source_pixels / 1e6
        stages.reach("uploading")
        url = runtime.storage.put(storage_key(job, payload, out.format), out.data, out.content_type)
        timer.done("upload")
        output = {
            "url": url,
            "width": out.width,
            "height": out.height,
            "format": out.format,
            "bytes": len(out.data),
            **extra,
        }
        # Kept with the job: a retry after a failed write-back reuses the upload (the failure's
        # handler saves the meta, output included).
        state.output = output
    if not state.saved:
        stages.reach("saving")
        # No request here to take an address from: IMGPROC_PUBLIC_URL, else relative to the API.
        url = absolute_url(output["url"], runtime.settings.public_url)
        _waiting_for_database(
            runtime.settings.database_wait,
            lambda: runtime.records.save_result(
                payload.vendor, payload.record_id, payload.type, url, original_url=payload.image_url
            ),
        )
        state.mark_saved()  # a retry from here on (Redis hiccup at the end) writes nothing again
        timer.done("save")
    _write_back(job, payload, output, runtime, stages, timer)
    # Saved by the worker with the job's end, the vendor's usage and its upload's drop (one round trip).
    stages.reach("done")
    return {
        **output,
        "record_id": payload.record_id,
        "duration_ms": round((time.perf_counter() - started) * 1000),
    }


def _waiting_for_database(wait: float, save: Callable[[], None]) -> None:
    """``save``, tried again through a database outage of up to ``wait`` seconds (1, 2, 4, 8 s apart).

    The result is uploaded by now, and the job's retries (5 s, then 10 s) are over within a
    MariaDB restart: measured in tests/containers, a 20 s outage failed all 20 jobs running.
    """
    deadline = time.monotonic() + wait
    delay = 1.0
    while True:
        try:
            return save()
        except TransientError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s; trying again in %.0f s", exc, delay)
            time.sleep(delay)
            delay = min(2 * delay, 8.0)


def _write_back(
    job: Job, payload: Payload, output: dict, runtime: runtimes.Runtime, stages: Stages, timer: _StageTimer
) -> None:
    """The vendor's own row (``IMGPROC_WRITEBACK_FILE``), after imgproc's: once, as ``saved`` is."""
    state = stages.state
    done = state.writeback or {}
    if runtime.writeback is None or done.get("state") in FINAL:
        return
    stages.reach("saving")
    values = {name: output.get(name) for name in ("url", "width", "height", "format", "bytes", "model")}
    values["url"] = absolute_url(output["url"], runtime.settings.public_url)
    try:
        written = runtime.writeback.write(
            payload.vendor, payload.type, payload.record_id, {**values, "job_id": job.id}
        )
    except JobError as exc:  # the failure's handler saves the meta: the status shows it
        state.writeback = {"state": "pending" if exc.retryable else "failed"}
        raise
    if written is not None:
        state.writeback = written
        timer.done("writeback")


class _StageTimer:
    """Seconds of each stage of one attempt, into ``imgproc_job_stage_seconds``."""

    def __init__(self, runtime: runtimes.Runtime, job_type: str):
        self.metrics = runtime.metrics
        self.job_type = job_type
        self.since = time.perf_counter()

    def record(self, stage: str, seconds: float) -> None:
        self.metrics.observe("imgproc_job_stage_seconds", seconds, type=self.job_type, stage=stage)

    def done(self, stage: str, minus: float = 0.0) -> None:
        now = time.perf_counter()
        self.record(stage, now - self.since - minus)
        self.since = now


def _input(job: Job, payload: Payload, runtime: runtimes.Runtime) -> bytes:
    if payload.upload:
        data = uploads.get(runtime.conn, job.id)
        if data is None:
            raise PermanentError("the uploaded image has expired", code="fetch_failed")
        return data
    return runtime.fetcher.fetch(payload.image_url)
