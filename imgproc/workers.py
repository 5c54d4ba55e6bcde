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
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq.exceptions import AbandonedJobError
from rq.scheduler import RQScheduler, run as run_scheduler
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
    def load(cls, settings: Settings, queues: tuple[str, ...] = QUEUES) -> "Runtime":
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
            conn=connect(settings.redis_url),
            fetcher=Fetcher(settings),
            storage=make_storage(settings),
            records=Records(make_engine(settings), max_fields=settings.db_max_fields),
            remover=remover,
            detector=detector,
        )

    def close(self) -> None:
        self.fetcher.close()
        if self.detector is not None:
            self.detector.close()


def classify(exc: BaseException, timeout: int | None) -> JobError:
    """Turn whatever a job raised into a typed error with a stable code."""
    if isinstance(exc, JobError):
        return exc
    if isinstance(exc, JobTimeoutException):
        return TransientError("timeout", f"the job ran over its {timeout} s limit")
    if isinstance(exc, AbandonedJobError):
        return TransientError("worker_lost", "the worker running this job stopped (killed or crashed)")
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


class SpawnedScheduler(RQScheduler):
    """rq's scheduler in a fresh interpreter instead of a fork of the worker.

    rq forks it from the worker that wins the scheduler lock; a fork of a
    process holding ISNet made that worker's next inferences pay copy-on-write
    for the whole memory arena (measured: its first job 4.0 s instead of 1.7)
    and kept a second copy of the arena alive. The scheduler needs none of it.
    """

    def start(self):
        import multiprocessing

        self._status = self.Status.STARTED
        self._connection = None  # rebuilt in the child from its connection kwargs, as rq does
        self._process = multiprocessing.get_context("spawn").Process(target=run_scheduler, args=(self,),
                                                                     name="Scheduler", daemon=True)
        self._process.start()
        return self._process


class ImgprocWorker(SimpleWorker):
    """A non-forking rq worker that hands every job this process's ``Runtime``.

    Before each dequeue it feeds its queues from the vendors' lanes
    (``imgproc.fairshare``), and it never blocks on Redis longer than
    ``FEED_INTERVAL`` so that jobs held back by a vendor's cap move on even
    when no new job arrives. While a job runs, a thread keeps the worker's
    and the job's heartbeats (rq's SimpleWorker has none until the job ends),
    so a killed worker's job is found abandoned within three heartbeats.
    """

    FEED_INTERVAL = 5
    # rq logs two more lines per job (its description, its result's lifetime); at hundreds of
    # light jobs a second that is a measurable share of a worker's time, and "Job OK" stays.
    log_result_lifespan = False
    log_job_description = False

    def __init__(self, *args, runtime: Runtime, **kwargs):
        settings = runtime.settings
        kwargs.setdefault("job_monitoring_interval", settings.heartbeat_interval)
        kwargs.setdefault("maintenance_interval", settings.maintenance_interval)
        kwargs.setdefault("worker_ttl", max(30, 3 * settings.heartbeat_interval, 2 * self.FEED_INTERVAL))
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self.stopping = False
        self.fair = FairShare(self.connection, settings.vendor_concurrency)
        self.push_exc_handler(record_error)
        self._beaten = 0.0
        self._suspension_checked = 0.0

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        # rq beats three times per job on its own (after the job, before and after each
        # dequeue), each an HSET and an EXPIRE round trip, to extend a key that lives for
        # worker_ttl + 60 s: one beat a second is plenty.
        if pipeline is None and timeout is None:
            if time.monotonic() - self._beaten < 1.0:
                return
            self._beaten = time.monotonic()
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline=None) -> None:
        # rq sets "idle" twice between two jobs (after one, before the next dequeue): one round trip saved.
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = "%H:%M:%S", log_format: str = "%(asctime)s %(message)s") -> None:
        # rq's own, with a scheduler that is spawned rather than forked (see SpawnedScheduler).
        self.scheduler = SpawnedScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                          logging_level=logging_level or self.log.level,
                                          date_format=date_format, log_format=log_format)
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def request_stop(self, signum, frame) -> None:
        self.stopping = True  # rq only records a stop asked for while busy
        super().request_stop(signum, frame)

    def get_heartbeat_ttl(self, job) -> int:
        return 3 * self.job_monitoring_interval

    def execute_job(self, job, queue) -> None:
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop), name="heartbeat", daemon=True)
        beat.start()
        try:
            super().execute_job(job, queue)
        finally:
            stop.set()
            beat.join()

    def _beat(self, job, stop: threading.Event) -> None:
        while not stop.wait(self.job_monitoring_interval):
            try:
                self.maintain_heartbeats(job)
            except (redis.RedisError, AttributeError) as exc:  # Redis away, or the job ended meanwhile
                log.debug("heartbeat skipped: %s", exc)

    def perform_job(self, job, queue) -> bool:
        job.runtime = self.runtime  # read by imgproc.tasks through rq's get_current_job()
        return super().perform_job(job, queue)

    def feed(self) -> None:
        for queue in self.queues:
            self.fair.feed(queue)

    def check_for_suspension(self, burst: bool) -> None:
        # rq asks Redis before every job; an operator's `rq suspend` can wait a second.
        if time.monotonic() - self._suspension_checked < 1.0:
            return
        self._suspension_checked = time.monotonic()
        try:
            super().check_for_suspension(burst)
        except redis.ConnectionError:
            pass  # Redis is away: the dequeue below waits for it with backoff

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except redis.ConnectionError as exc:
            log.warning("maintenance skipped, Redis unreachable: %s", exc)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if timeout is None:  # burst mode: one look
            self.feed()
            return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
        idle_since = time.monotonic()
        pause = 1.0
        first = True
        while True:
            try:
                if not first:  # rq checked before calling us; while we idle in here, we check
                    self.check_for_suspension(burst=False)
                    if self._stop_requested:
                        return None
                first = False
                self.feed()
                result = super().dequeue_job_and_maintain_ttl(min(timeout, self.FEED_INTERVAL), self.FEED_INTERVAL)
                pause = 1.0
            except redis.ConnectionError as exc:  # Redis away: wait for it here, models stay loaded
                log.warning("Redis unreachable (%s); trying again in %.0f s", exc, pause)
                time.sleep(pause)
                pause = min(pause * 2, 30)
                continue
            if result is not None:
                return result
            if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                return None


def build_worker(settings: Settings, queues: tuple[str, ...], runtime: Runtime | None = None,
                 name: str | None = None) -> ImgprocWorker:
    """A worker on ``queues`` (in priority order), with a freshly loaded runtime unless one is given."""
    runtime = runtime or Runtime.load(settings, queues)
    return ImgprocWorker(list(queues), connection=runtime.conn, runtime=runtime, name=name,
                         default_result_ttl=settings.result_ttl)


def tune_malloc() -> None:
    """Give freed image buffers back to the OS (glibc): worker RSS 1.37 GB instead of 1.59, same speed.

    glibc raises its mmap threshold after large frees, so later 12-megapixel
    buffers come from the heap and stay resident; a fixed threshold keeps
    every large buffer mmapped and unmapped on free (measured over 15 jobs of
    512 px to 4000x3000).
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def main(argv: list[str] | None = None) -> int:
    """``python worker.py [--queues a,b] [--burst]``: run one worker process."""
    parser = argparse.ArgumentParser(prog="worker.py", description="Run one imgproc worker process.")
    parser.add_argument("--queues", default=",".join(QUEUES),
                        help=f"comma-separated queues in priority order (default: {','.join(QUEUES)})")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: host and pid)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_malloc()
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
        while True:
            try:
                worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO",
                            max_jobs=settings.worker_max_jobs or None)
            except redis.ConnectionError as exc:  # raised by rq's own teardown when Redis is gone
                log.warning("worker loop ended without Redis: %s", exc)
            if args.burst or worker.stopping or not _lost_redis(worker):
                break
            # rq left its loop on a Redis error it does not handle: wait for Redis, then go on
            # in this process, models still loaded, under a new worker name.
            _wait_for_redis(worker.connection)
            worker = build_worker(settings, queues, runtime=worker.runtime)
    finally:
        worker.runtime.close()
    return 0


def _lost_redis(worker: ImgprocWorker) -> bool:
    try:
        worker.connection.ping()
        return False
    except redis.RedisError:
        return True


def _wait_for_redis(conn: redis.Redis) -> None:
    delay = 1.0
    while True:
        try:
            conn.ping()
            log.info("Redis is back")
            return
        except redis.RedisError:
            log.warning("Redis unreachable; trying again in %.0f s", delay)
            time.sleep(delay)
            delay = min(delay * 2, 30)


if __name__ == "__main__":
    sys.exit(main())
