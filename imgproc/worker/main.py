"""``python worker.py``: one worker process, from its arguments to its graceful end."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time

import redis

from imgproc.config import Settings
from imgproc.jobtypes import ALL_QUEUES, QUEUE_WEBHOOKS, QUEUES

from . import readiness
from .delivery import DeliveryThread
from .process import RECONNECT_MAX, ImgprocWorker, build_worker
from .sharing import unaddressed, unshared
from .slots import Slots

log = logging.getLogger("imgproc.worker")


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
    parser.add_argument(
        "--queues",
        default=",".join(QUEUES),
        help=f"comma-separated queues in priority order (default: {','.join(QUEUES)})",
    )
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: host and pid)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_malloc()
    settings = Settings.from_env()
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    unknown = set(queues) - set(ALL_QUEUES)
    if unknown:
        parser.error(f"unknown queue(s) {', '.join(sorted(unknown))}; known: {', '.join(ALL_QUEUES)}")
    if QUEUE_WEBHOOKS in queues and len(queues) > 1:
        # A receiver that takes 15 s to answer would hold an image worker for as long.
        parser.error(f"{QUEUE_WEBHOOKS} needs workers of its own: --queues {QUEUE_WEBHOOKS}")
    started = time.perf_counter()
    try:
        worker = build_worker(settings, queues, name=args.name)
    except Exception as exc:  # a worker that cannot load its models must not start
        log.error("worker cannot start: %s", exc)
        return 2
    # SIGHUP reads IMGPROC_WRITEBACK_FILE again before the next write-back (by default it ended the worker).
    signal.signal(signal.SIGHUP, lambda signum, frame: worker.runtime.reload_writeback())
    stores = queues != (QUEUE_WEBHOOKS,)
    for warning in unshared(settings, stores_results=stores) + unaddressed(settings, stores_results=stores):
        log.warning(warning)
    slots = Slots(settings, queues, worker.runtime, name=args.name) if settings.batch > 1 else None
    log.info(
        "worker %s ready in %.1fs on %s (pid %d): inference on %s, %s, %d job slot(s)",
        slots.base + ".slot*" if slots else worker.name,
        time.perf_counter() - started,
        ",".join(queues),
        os.getpid(),
        worker.runtime.provider,
        settings.precision,
        settings.batch,
    )
    readiness.mark(settings.ready_file, slots.base if slots else worker.name)  # models are loaded
    delivery = None
    if settings.webhook_thread and QUEUE_WEBHOOKS not in queues:  # plain replicas deliver webhooks too
        delivery = DeliveryThread(worker.runtime, slots.base if slots else worker.name, args.burst).start()
    if slots is not None:
        try:
            return slots.run(burst=args.burst)
        finally:
            if delivery is not None:
                delivery.stop()
            worker.runtime.close()
    try:
        while True:
            lost = False
            try:
                worker.work(
                    burst=args.burst,
                    with_scheduler=True,
                    logging_level="INFO",
                    max_jobs=settings.worker_max_jobs or None,
                )
            # Raised by rq's own teardown when Redis is gone: refused, or (a cut link) timed out.
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("worker loop ended without Redis: %s", exc)
                lost = True  # even if Redis is back already (a Sentinel failover takes seconds)
            if args.burst or worker.stopping or not (lost or _lost_redis(worker)):
                break
            # rq left its loop on a Redis error it does not handle: wait for Redis, then go on
            # in this process, models still loaded, under a new worker name.
            _wait_for_redis(worker.connection)
            lost_worker, worker = worker, build_worker(settings, queues, runtime=worker.runtime)
            worker.succeed(lost_worker)
    finally:
        if delivery is not None:
            delivery.stop()
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
            delay = min(delay * 2, RECONNECT_MAX)
