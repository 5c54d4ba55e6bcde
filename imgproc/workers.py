"""Worker processes: models loaded once at start-up, jobs run without forking.

rq's default Worker forks a child per job; an ONNX Runtime session used across
a fork loses its thread pool (measured: 5.4 s instead of 3.2 s per image) and
the fork costs ~23 ms per job. ``ImgprocWorker`` is rq's ``SimpleWorker``
(no fork), and the number of worker processes is the unit of scaling.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq.timeouts import JobTimeoutException
from rq.worker import SimpleWorker

from .config import QUEUE_BG, QUEUE_FACE, QUEUES, Settings
from .errors import JobError, PermanentError, TransientError
from .fairshare import FairShare

log = logging.getLogger("imgproc.worker")


@dataclass
class Runtime:
    """What a job needs from its process: built once by the worker, handed to each job."""

    settings: Settings
    conn: redis.Redis
    fetcher: Any
    storage: Any
    records: Any
    remover: Any = None
    detector: Any = None

    @classmethod
    def load(cls, settings: Settings, queues: tuple[str, ...] = QUEUES, conn: redis.Redis | None = None) -> "Runtime":
        """Connect the services and load the models the queues need (a missing model stops here)."""
        from .db import make_engine
        from .fetch import Fetcher
        from .queue import connect
        from .records import Records
        from .sessions import BackgroundRemover, FaceDetector
        from .storage import make_storage

        remover = BackgroundRemover(settings) if {QUEUE_BG, QUEUE_FACE} & set(queues) else None
        detector = FaceDetector(settings) if QUEUE_FACE in queues else None
        return cls(
            settings=settings,
            conn=conn or connect(settings.redis_url),
            fetcher=Fetcher(settings),
            storage=make_storage(settings),
            records=Records(make_engine(settings), max_fields=settings.db_max_fields),
            remover=remover,
            detector=detector,
        )

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()


def classify(exc: BaseException, timeout: int | None) -> JobError:
    """Turn whatever a job raised into a typed error with a stable code."""
    if isinstance(exc, JobError):
        return exc
    if isinstance(exc, JobTimeoutException):
        return TransientError("timeout", f"the job ran over its {timeout} s limit")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return TransientError("internal", "Redis was unreachable during the job")
    if isinstance(exc, MemoryError):
        return PermanentError("image_too_large", "the image needed more memory than the worker has")
    return PermanentError("internal", f"{type(exc).__name__}: {str(exc)[:200]}")


def record_error(job, exc_type, exc_value, traceback) -> bool:
    """rq exception handler: store the typed error on the job; permanent errors are not retried."""
    error = classify(exc_value, job.timeout)
    job.meta["error"] = error.to_dict()
    if not error.retryable:
        job.retries_left = 0  # rq reads this right after the handlers to decide on a retry
    try:
        job.save_meta()
    except redis.RedisError:
        log.warning("could not save the error of job %s", job.id)
    log.info("job %s failed: %s %s", job.id, error.code, error.message)
    return True


class ImgprocWorker(SimpleWorker):
    """A non-forking rq worker that hands every job this process's ``Runtime``.

    Before each dequeue it feeds its queues from the vendors' lanes
    (``imgproc.fairshare``), and it never blocks on Redis longer than
    ``FEED_INTERVAL`` so that jobs held back by a vendor's cap move on even
    when no new job arrives.
    """

    FEED_INTERVAL = 5

    def __init__(self, *args, runtime: Runtime, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self.fair = FairShare(self.connection, runtime.settings.vendor_concurrency)
        self.push_exc_handler(record_error)

    def feed(self) -> None:
        for queue in self.queues:
            self.fair.feed(queue)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if timeout is None:  # burst mode: one look
            self.feed()
            return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
        idle_since = time.monotonic()
        while True:
            self.feed()
            result = super().dequeue_job_and_maintain_ttl(min(timeout, self.FEED_INTERVAL), self.FEED_INTERVAL)
            if result is not None:
                return result
            if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                return None

    def perform_job(self, job, queue) -> bool:
        job.runtime = self.runtime  # read by imgproc.tasks through rq's get_current_job()
        return super().perform_job(job, queue)


def build_worker(settings: Settings, queues: tuple[str, ...], runtime: Runtime | None = None,
                 name: str | None = None) -> ImgprocWorker:
    """A worker on ``queues`` (in priority order), with a freshly loaded runtime unless one is given."""
    runtime = runtime or Runtime.load(settings, queues)
    return ImgprocWorker(list(queues), connection=runtime.conn, runtime=runtime, name=name,
                         default_result_ttl=settings.result_ttl)


def main(argv: list[str] | None = None) -> int:
    """``python worker.py [--queues a,b] [--burst]``: run one worker process."""
    parser = argparse.ArgumentParser(prog="worker.py", description="Run one imgproc worker process.")
    parser.add_argument("--queues", default=",".join(QUEUES),
                        help=f"comma-separated queues in priority order (default: {','.join(QUEUES)})")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: host and pid)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    unknown = set(queues) - set(QUEUES)
    if unknown:
        parser.error(f"unknown queue(s) {', '.join(sorted(unknown))}; known: {', '.join(QUEUES)}")
    started = time.perf_counter()
    try:
        worker = build_worker(settings, queues, name=args.name)
    except Exception as exc:  # a worker that cannot load its models must not start
        log.error("worker cannot start: %s", exc)
        return 2
    log.info("worker %s ready in %.1fs on %s (pid %d)", worker.name, time.perf_counter() - started,
             ",".join(queues), os.getpid())
    try:
        worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")
    finally:
        worker.runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
