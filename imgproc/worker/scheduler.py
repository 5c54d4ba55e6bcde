"""rq's scheduler, started in a fresh interpreter rather than forked from a worker holding models."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

from rq.scheduler import RQScheduler
from rq.scheduler import run as run_scheduler

from imgproc.config import Settings
from imgproc.queueing import redis_for


class SpawnedScheduler(RQScheduler):
    """rq's scheduler in a fresh interpreter instead of a fork of the worker.

    rq forks it from the worker that wins the scheduler lock; a fork of a
    process holding ISNet made that worker's next inferences pay copy-on-write
    for the whole memory arena (measured: its first job 4.0 s instead of 1.7)
    and kept a second copy of the arena alive. The scheduler needs none of it.
    """

    def __init__(self, *args, settings: Settings | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._settings = settings
        if settings is not None and settings.redis_sentinels:
            # A Sentinel pool's kwargs hold a live proxy of the pool (not picklable): the child
            # builds its connection from the settings instead.
            self._pool_kwargs = {}

    @property
    def connection(self):
        if self._connection is None and self._settings is not None and self._settings.redis_sentinels:
            self._connection = redis_for(self._settings)
        return super().connection

    def start(self):
        self._status = self.Status.STARTED
        self._connection = None  # rebuilt in the child from its connection kwargs, as rq does
        self._process = multiprocessing.get_context("spawn").Process(
            target=_run_beside, args=(self, os.getpid()), name="Scheduler", daemon=True
        )
        self._process.start()
        return self._process


def _run_beside(scheduler: SpawnedScheduler, parent: int) -> None:
    """rq's scheduler loop, ended (its locks released) when the worker that started it is gone.

    ``daemon=True`` ends it only when the worker exits normally: after a SIGKILL it ran on as an
    orphan, holding its queues' scheduler locks, for good.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        scheduler.request_stop()  # rq's loop stops and releases its locks within its interval

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    run_scheduler(scheduler)
