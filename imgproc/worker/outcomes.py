"""How a job's attempt ends on an imgproc worker: one transaction, its webhook, events, release, metrics.

``JobEnds`` is the part of ``ImgprocWorker`` (``imgproc.worker.process``) that
runs after rq has run a job. A finished image job ends in one transaction: rq's
own bookkeeping (result, registries, execution) with imgproc's (the ``done``
stage and its events, the vendor's usage, the upload's drop, the fair-share
release, the next feed and the worker's idle state). A light job's end took
eight round trips before, one now (``bench``'s light phase, README).

A job stopped on request (``DELETE`` of a started job) ends ``stopped``: rq's
stop-job command reaches ``kill_horse`` (there is no horse in a non-forking
worker), the attempt raises ``JobStopped`` at its next stage, and ``ended``
announces a ``job.failed`` webhook whose state says ``stopped`` and releases
the vendor's lane.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.worker import WorkerStatus

from imgproc.errors import ImgprocError
from imgproc.jobtypes import Payload
from imgproc.queueing import events, fairshare, jobindex, uploads
from imgproc.queueing.state import JobState
from imgproc.queueing.views import job_view

from . import webhooks
from .runtime import Runtime
from .stages import ImgprocJob, JobStopped, Stages

if TYPE_CHECKING:
    from rq.worker import SimpleWorker as _Base
else:
    _Base = object

log = logging.getLogger("imgproc.worker")


class JobEnds(_Base):
    """The end of each attempt, for ``ImgprocWorker``."""

    runtime: Runtime
    fairs: dict[str, fairshare.FairShare]
    #: Whether the last job's end fed the queues already: the feed before the next dequeue is skipped.
    fed: bool = False
    #: Whether the last job's end wrote the worker's idle state: rq's own write after the job is skipped.
    idle_written: bool = False
    #: The image job attempt in hand, for a stop to reach (``kill_horse``).
    running: Stages | None = None

    def kill_horse(self, sig=None) -> None:
        # rq's stop-job command (its pubsub thread) sets _stopped_job_id and calls this to kill the
        # forked horse; here the job runs in this process, so its attempt is told to stop at its next
        # stage. rq's handle_job_failure then ends it STOPPED (no retry) on seeing _stopped_job_id.
        running = self.running
        if running is not None and running.job.id == self._stopped_job_id:
            log.info("job %s: stop requested, stopping at its next stage", running.job.id)
            running.stop()

    def handle_exception(self, job: Job, *exc_info) -> None:
        if not isinstance(exc_info[1], JobStopped):
            return super().handle_exception(job, *exc_info)
        # A stop asked for is no error: rq would log it at ERROR with its traceback. Its handlers
        # (record_error) still run, as rq runs them: until one returns False.
        for handler in self._exc_handlers:
            if handler(job, *exc_info) is False:
                break

    def handle_job_success(
        self, job: ImgprocJob, queue: Queue, started_job_registry: StartedJobRegistry
    ) -> None:
        # rq's, less its WATCH on the job's dependents (imgproc enqueues no job that depends on another,
        # and the WATCH, its SMEMBERS and the retry loop cost two round trips), and with imgproc's end
        # of the job in the same transaction.
        stages = job.stages
        payload = Payload.of(job)
        if stages is None or payload is None:  # not an image job of this worker (a webhook delivery)
            return super().handle_job_success(job, queue, started_job_registry)
        settings = self.runtime.settings
        with self.connection.pipeline() as pipe:
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            result_ttl = job.get_result_ttl(self.default_result_ttl)
            if result_ttl != 0:
                execution = self.execution
                job._handle_success(
                    result_ttl,
                    pipeline=pipe,
                    worker_name=self.name,
                    execution_id=execution.id if execution else None,
                    execution_started_at=execution.created_at if execution else None,
                    execution_ended_at=job.ended_at,
                )
            job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
            self.cleanup_execution(job, pipeline=pipe)
            stages.write_done(pipe)
            jobindex.move(pipe, job, settings.failure_ttl, JobStatus.FINISHED.value)  # found by its state
            if payload.upload:
                uploads.drop(pipe, payload.vendor, job.id)  # its photo is no longer needed
            if not payload.webhook_url:  # else published after the announce, which the event shows
                events.publish(pipe, self._view(job), events.STATE, settings.failure_ttl)
            self.fairs[job.origin].release(job.origin, payload.vendor, job.id, pipe)
            self.feed(pipe)
            # Written with the end, but the worker stays busy in memory until rq sets it idle after the
            # job (set_state): a stop asked for meanwhile must wait for the job's end, not raise into it
            # (rq raises StopRequested at once in an idle worker: it failed a finished job here, once).
            pipe.hset(self.key, "state", WorkerStatus.IDLE)
            self.idle_written = True
            pipe.execute()

    def _view(self, job: Job) -> dict:
        # rq keeps the return value on the job it just ran: the view needs no round trip for it.
        return job_view(job, self.runtime.settings, result=getattr(job, "_result", None))

    def feed(self, pipe=None) -> None:
        """Move jobs from the vendors' lanes into this worker's queues (with ``pipe``: in its transaction)."""
        if pipe is None and self.fed:
            self.fed = False  # the last job's end has just fed them
            return
        for queue in self.queues:
            self.fairs[queue.name].feed(queue, pipe)
        self.fed = pipe is not None

    def ended(self, job: Job) -> None:
        """After an image job's attempt: its webhook (if it ended for good), its last event, its metrics.

        A stopped job's webhook is a ``job.failed`` message whose state says ``stopped``.
        """
        status = job.get_status(refresh=False)
        payload = Payload.of(job)
        if status == JobStatus.FINISHED and not (payload and payload.webhook_url):
            self._count(job)  # its end's transaction did the rest
            return
        view = self._view(job)
        if (
            status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED)
            and payload
            and payload.webhook_url
        ):
            try:
                webhooks.announce(self.runtime, job, view, payload.webhook_url)
                view = {**view, "webhook": JobState.of(job).webhook}
            except (ImgprocError, redis.RedisError) as exc:  # the job's own outcome stands
                log.warning("could not announce the end of job %s: %s", job.id, exc)
        self.publish(job, events.STATE, view)  # finished, failed, or scheduled for a retry
        self._count(job)
        if status == JobStatus.FINISHED:
            return  # released with its end
        if status in (JobStatus.FAILED, JobStatus.STOPPED):  # found by its state; a retry stays open
            try:
                jobindex.move(self.connection, job, self.runtime.settings.failure_ttl)
            except redis.RedisError as exc:  # a search's sync with rq's failed registry moves it later
                log.warning("could not index the end of job %s: %s", job.id, exc)
        if status == JobStatus.STOPPED:  # a failure drops it in record_error
            try:
                uploads.drop_for(self.connection, job)
            except redis.RedisError as exc:  # it expires with the result's lifetime
                log.warning("could not drop the upload of job %s: %s", job.id, exc)
        self.release(job)  # the vendor's next job may go

    def release(self, job: Job) -> None:
        """A job that left its queue (ended, or scheduled for a retry) no longer counts for its vendor."""
        vendor = JobState.of(job).vendor
        if vendor and job.get_status(refresh=False) != JobStatus.QUEUED:  # not back in the queue at once
            try:
                self.fairs[job.origin].release(job.origin, vendor, job.id)
            except (redis.RedisError, KeyError) as exc:  # the feed's re-count finds it later
                log.warning("could not release job %s from its vendor's count: %s", job.id, exc)

    def _count(self, job: Job) -> None:
        """The attempt's outcome, duration and wait, into the process's metrics."""
        metrics = self.runtime.metrics
        state = JobState.of(job)
        labels = {"queue": job.origin, "type": str(state.type)}
        status = job.get_status(refresh=False)
        code = str((state.error or {}).get("code", "internal"))
        if status == JobStatus.FINISHED:
            metrics.inc("imgproc_jobs_finished_total", **labels)
        elif status == JobStatus.FAILED:
            metrics.inc("imgproc_jobs_failed_total", code=code, **labels)
        elif status in (JobStatus.SCHEDULED, JobStatus.QUEUED):  # rq put it back for another attempt
            metrics.inc("imgproc_jobs_retried_total", code=code, **labels)
        if job.started_at and job.ended_at:
            metrics.observe(
                "imgproc_job_duration_seconds", (job.ended_at - job.started_at).total_seconds(), **labels
            )
        if job.started_at and job.enqueued_at:
            wait = max(0.0, (job.started_at - job.enqueued_at).total_seconds())
            metrics.observe("imgproc_job_queue_wait_seconds", wait, **labels)

    def publish(self, job: Job, kind: str, view: dict | None = None) -> None:
        """The job's status to its event stream; a Redis error here never fails the job."""
        try:
            view = view or job_view(job, self.runtime.settings)
            events.publish(self.connection, view, kind, self.runtime.settings.failure_ttl)
        except redis.RedisError as exc:
            log.warning("could not publish an event of job %s: %s", job.id, exc)
