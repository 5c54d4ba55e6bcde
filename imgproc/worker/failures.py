"""The failure policy: what a job raised, turned into a typed error that is retried or not.

``JobError`` subclasses say it themselves (``TransientError`` is retried with
backoff, ``PermanentError`` fails at once); anything else is mapped here. rq
calls ``record_error`` for every failed attempt, before it decides on a retry,
also for a job whose worker died (its registries' sweep, ``imgproc.worker.abandoned``).
"""

from __future__ import annotations

import logging

import redis
from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from imgproc.errors import JobError, PermanentError, TransientError
from imgproc.queueing import uploads
from imgproc.queueing.state import JobState

log = logging.getLogger("imgproc.worker")


def classify(exc: BaseException, timeout: int | None) -> JobError:
    """Turn whatever a job raised into a typed error with a stable code."""
    if isinstance(exc, JobError):
        return exc
    if isinstance(exc, JobTimeoutException):
        return TransientError(f"the job ran over its {timeout} s limit", code="timeout")
    if isinstance(exc, AbandonedJobError):
        return TransientError("the worker running this job stopped (killed or crashed)", code="worker_lost")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return TransientError("Redis was unreachable during the job", code="internal")
    if isinstance(exc, MemoryError):
        return PermanentError("the image needed more memory than the worker has", code="image_too_large")
    return PermanentError(f"{type(exc).__name__}: {str(exc)[:200]}", code="internal")


def record_error(job, exc_type, exc_value, traceback) -> bool:
    """rq exception handler: store the typed error on the job; permanent errors are not retried.

    A job that is not retried has ended for good: its uploaded photo is dropped.
    """
    error = classify(exc_value, job.timeout)
    JobState.of(job).error = error.to_dict()
    if not error.retryable:
        job.retries_left = 0  # rq reads this right after the handlers to decide on a retry
    try:
        job.save_meta()
        if not job.retries_left or job.retries_left <= 0:  # rq's own test, right after the handlers
            uploads.drop_for(job.connection, job)
    except redis.RedisError:
        log.warning("could not save the error of job %s (or drop its upload)", job.id)
    log.info(
        "job %s %s: %s %s",
        job.id,
        "ended" if error.code == "stopped" else "failed",
        error.code,
        error.message,
    )
    return True
