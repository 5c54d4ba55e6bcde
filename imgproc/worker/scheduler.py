"""rq's scheduler, started in a fresh interpreter rather than forked from a worker holding models."""

from __future__ import annotations

import multiprocessing

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
            target=run_scheduler, args=(self,), name="Scheduler", daemon=True
        )
        self._process.start()
        return self._process
