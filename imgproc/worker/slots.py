"""``IMGPROC_BATCH`` > 1: one worker process, several job slots, their ISNet inferences batched.

rq's workers run one job at a time. Rather than teach one rq worker to hold
several current jobs (its registries, heartbeats, ``current_job`` field and
retry handling all assume one), each slot is a whole ``ImgprocWorker`` with
its own name (``<base>.slot<i>``), in its own thread, sharing the process's
``Runtime``: its models, its Redis pool, its metrics. Each slot dequeues from
the lanes as a single worker does (fairness is the lanes' business), runs one
job with its own lifecycle, retries and stage events, and its model call meets
the other slots' in the remover's micro-batcher (``imgproc.processing.batching``).

What changes for a slot thread, because only the main thread gets signals:
- job timeouts use rq's ``TimerDeathPenalty`` (an exception raised in the slot's
  thread) rather than SIGALRM;
- rq's signal handlers are not installed; the main thread's are: the first
  SIGTERM/SIGINT asks every slot to stop after its job (warm), a second one exits
  at once (cold: the running jobs are found abandoned and retried as ``worker_lost``);
- only slot 0 runs rq's scheduler.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

import redis
from rq.timeouts import TimerDeathPenalty

from imgproc.config import Settings

from .process import ImgprocWorker
from .runtime import Runtime

log = logging.getLogger("imgproc.worker")


class SlotWorker(ImgprocWorker):
    """An ``ImgprocWorker`` that runs in a thread other than the main one."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass  # signals reach the main thread only: the supervisor's handlers stop the slots

    def stop_soon(self) -> None:
        """Leave after the job in hand (at once when idle, within one ``FEED_INTERVAL``)."""
        self.stopping = True
        self._stop_requested = True


def _lost_redis(conn: redis.Redis) -> bool:
    try:
        conn.ping()
        return False
    except redis.RedisError:
        return True


class Slots:
    """``batch`` slot workers over one runtime, supervised from the main thread."""

    def __init__(
        self, settings: Settings, queues: tuple[str, ...], runtime: Runtime, name: str | None = None
    ) -> None:
        self.settings, self.queues, self.runtime = settings, queues, runtime
        self.base = name or f"{socket.gethostname()}.{os.getpid()}"
        self.stopping = threading.Event()
        self.workers = [self._worker(i) for i in range(settings.batch)]

    def _worker(self, i: int, restart: int = 0) -> SlotWorker:
        return SlotWorker(
            list(self.queues),
            connection=self.runtime.conn,
            runtime=self.runtime,
            name=f"{self.base}.slot{i}" + (f".{restart}" if restart else ""),
            default_result_ttl=self.settings.result_ttl,
        )

    def stop(self, signum=None, frame=None) -> None:
        """First signal: every slot stops after its job; second: exit now."""
        if self.stopping.is_set() and signum is not None:
            log.warning("second stop signal: leaving now, running jobs will be retried as worker_lost")
            os._exit(1)
        self.stopping.set()
        for worker in self.workers:
            worker.stop_soon()

    def _run(self, i: int, burst: bool) -> None:
        restarts = 0
        while True:
            worker = self.workers[i]
            try:
                worker.work(
                    burst=burst,
                    with_scheduler=i == 0,
                    logging_level="INFO",
                    max_jobs=self.settings.worker_max_jobs or None,
                )
            except redis.ConnectionError as exc:
                log.warning("slot %d: worker loop ended without Redis: %s", i, exc)
            if burst or self.stopping.is_set() or not _lost_redis(self.runtime.conn):
                break
            while _lost_redis(self.runtime.conn) and not self.stopping.wait(1.0):
                pass
            restarts += 1
            self.workers[i] = self._worker(i, restarts)
        if not burst and not self.stopping.is_set():
            # One slot reached IMGPROC_WORKER_MAX_JOBS: the process leaves for a fresh one, all slots with it.
            self.stop()

    def run(self, burst: bool = False) -> int:
        """Run every slot until they all end; 0 like a single worker."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        threads = [
            threading.Thread(target=self._run, args=(i, burst), name=f"slot-{i}", daemon=True)
            for i in range(len(self.workers))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # a short join: the main thread must stay free to take signals
        remover = self.runtime.remover
        for model, batcher in (remover.batchers if remover is not None else {}).items():
            sizes = ", ".join(f"{n} x {size}" for size, n in sorted(batcher.sizes.items()))
            log.info("%s: %d session runs, by batch size: %s", model, batcher.sizes.total(), sizes or "none")
        return 0
