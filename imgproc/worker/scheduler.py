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
from imgproc.queueing import FairShare, deliveries, pauses, redis_for
from imgproc.queueing.jobs import LaneQueue
from imgproc.queueing.state import JobState


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
        """rq's, except that some jobs due for another attempt go back to their vendor's lane.

        rq pushes a due retry straight into its queue: a dead receiver's retries would have filled the
        webhooks queue ahead of every other vendor's lane, and a retry of a paused queue's or vendor's
        job would have run during the pause. Those wait in their lanes; other retries go in front.
        """
        self._status = self.Status.WORKING
        if not self._scheduled_job_registries and self._acquired_locks:
            self.prepare_registries()
        for registry in self._scheduled_job_registries:
            job_ids = registry.get_jobs_to_schedule(current_timestamp())
            if not job_ids:
                continue
            found = Job.fetch_many(job_ids, connection=self.connection, serializer=self.serializer)
            jobs = [job for job in found if job is not None]
            if self._settings is None:
                laned = []
            elif registry.name == QUEUE_WEBHOOKS:
                laned = jobs
            else:  # the paused names read once for the jobs due, not a round trip per job
                with self.connection.pipeline(transaction=False) as pipe:
                    pauses.paused(pipe)
                    queues, vendors = ({name.decode() for name in names} for names in pipe.execute())
                held = registry.name in queues
                laned = [job for job in jobs if held or _vendor(job) in vendors]
            self._requeue(registry, job_ids, [job for job in jobs if job not in laned], laned)
        self._status = self.Status.STARTED

    def _requeue(self, registry, job_ids: list[str], direct: list[Job], laned: list[Job]) -> None:
        """Due jobs out of ``registry``, in one transaction: ``direct`` into their RQ queue as rq does,
        ``laned`` saved as queued and admitted to their vendors' lanes (webhook deliveries then fed)."""
        name, conn = registry.name, self.connection
        plain = Queue(name, connection=conn, serializer=self.serializer)
        lanes = LaneQueue(name, connection=conn, serializer=self.serializer)
        with conn.pipeline() as pipe:
            for job in direct:
                plain._enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
            for job in laned:
                lanes._enqueue_job(job, pipeline=pipe)  # saved as queued; LaneQueue pushes nothing
            for job_id in job_ids:
                registry.remove(job_id, pipeline=pipe)
            if laned and name == QUEUE_WEBHOOKS:
                deliveries.admit(pipe, conn, self._settings, laned)
            elif laned:
                fair = FairShare(conn, self._settings.vendor_concurrency)
                for job in laned:
                    fair.admit(pipe, name, _vendor(job), [job.id])
            pipe.execute()

    def start(self):
        self._status = self.Status.STARTED
        self._connection = None  # rebuilt in the child from its connection kwargs, as rq does
        self._process = multiprocessing.get_context("spawn").Process(
            target=_run_beside, args=(self, os.getpid()), name="Scheduler", daemon=True
        )
        self._process.start()
        return self._process


def _vendor(job: Job) -> str:
    return JobState.of(job).vendor or ""


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
