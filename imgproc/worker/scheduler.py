"""rq's scheduler, started in a fresh interpreter rather than forked from a worker holding models."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

from rq import Queue
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.scheduler import run as run_scheduler
from rq.utils import current_timestamp

from imgproc.config import Settings
from imgproc.jobtypes import QUEUE_WEBHOOKS
from imgproc.queueing import deliveries, redis_for
from imgproc.queueing.jobs import LaneQueue


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

    def enqueue_scheduled_jobs(self):
        """rq's, except that webhook deliveries due for another attempt go back to their vendor's lane.

        rq pushes a due retry straight into its queue: a dead receiver's retries would have filled the
        webhooks queue ahead of every other vendor's lane.
        """
        self._status = self.Status.WORKING
        if not self._scheduled_job_registries and self._acquired_locks:
            self.prepare_registries()
        for registry in self._scheduled_job_registries:
            job_ids = registry.get_jobs_to_schedule(current_timestamp())
            if not job_ids:
                continue
            lanes = registry.name == QUEUE_WEBHOOKS and self._settings is not None
            queue = (LaneQueue if lanes else Queue)(
                registry.name, connection=self.connection, serializer=self.serializer
            )
            with self.connection.pipeline() as pipe:
                found = Job.fetch_many(job_ids, connection=self.connection, serializer=self.serializer)
                jobs = [job for job in found if job is not None]
                for job in jobs:
                    queue._enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
                for job_id in job_ids:
                    registry.remove(job_id, pipeline=pipe)
                if lanes:
                    deliveries.admit(pipe, self.connection, self._settings, jobs)
                pipe.execute()
        self._status = self.Status.STARTED

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
