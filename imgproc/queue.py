"""Redis connection, the three queues, enqueueing with the retry policy, and job views."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import resolve_serializer
from rq.worker import Worker

from .config import QUEUES, Settings
from .errors import Conflict, NotFound
from .fairshare import FairShare
from .options import JOB_QUEUES

#: Task function of each job type (imgproc/tasks.py).
TASKS = {"remove-bg": "imgproc.tasks.remove_bg", "crop-face": "imgproc.tasks.crop_face",
         "process-image": "imgproc.tasks.process_image"}

KEY_BATCH = "imgproc:batch:{}"
KEY_UPLOAD = "imgproc:upload:{}"
KEY_VENDOR_JOBS = "imgproc:vendor-jobs:{}"
KEY_IDEMPOTENCY = "imgproc:idempotency:{}:{}"
STATES = ("queued", "started", "deferred", "scheduled", "finished", "failed", "canceled", "stopped")
#: rq's default serializer, which stores every job's meta.
SERIALIZER = resolve_serializer()
DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}


def connect(url: str) -> redis.Redis:
    """A Redis client with short timeouts, so an outage is an error and not a hang."""
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=15,
                                retry_on_timeout=False)


@dataclass
class JobSpec:
    """One job to enqueue: validated options, and either a URL or uploaded bytes."""

    type: str
    record_id: str
    options: dict
    image_url: str | None = None
    upload: bytes | None = None
    job_id: str | None = None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


class JobQueue:
    """Enqueues jobs for a vendor and reads them back, never across vendors."""

    def __init__(self, conn: redis.Redis, settings: Settings):
        self.conn = conn
        self.settings = settings
        self.fair = FairShare(conn, settings.vendor_concurrency)
        self.queues = {name: Queue(name, connection=conn, default_timeout=settings.job_timeout) for name in QUEUES}

    def _retry(self) -> Retry | None:
        if self.settings.max_retries == 0:
            return None
        return Retry(max=self.settings.max_retries, interval=self.settings.retry_intervals)

    def enqueue(self, vendor: str, specs: list[JobSpec], *, batch: bool = False) -> tuple[str | None, list[Job]]:
        """Enqueue jobs of one type atomically (one Redis transaction); a bulk gets a batch id."""
        if not specs:
            return None, []
        job_type = specs[0].type
        queue = LaneQueue(JOB_QUEUES[job_type], connection=self.conn, default_timeout=self.settings.job_timeout)
        batch_id = "b_" + uuid.uuid4().hex if batch else None
        created = time.time()
        datas = []
        with self.conn.pipeline() as pipe:
            for spec in specs:
                job_id = spec.job_id or uuid.uuid4().hex
                payload = {"vendor": vendor, "type": spec.type, "record_id": spec.record_id,
                           "image_url": spec.image_url, "options": spec.options, "upload": spec.upload is not None}
                meta = {"vendor": vendor, "type": spec.type, "record_id": spec.record_id, "batch_id": batch_id,
                        "progress": 0, "stage": "queued", "attempts": 0,
                        "max_attempts": self.settings.max_attempts}
                if spec.upload is not None:
                    # Uploaded bytes wait in Redis so a worker on any host can read them.
                    pipe.set(KEY_UPLOAD.format(job_id), spec.upload, ex=self.settings.result_ttl)
                datas.append(Queue.prepare_data(
                    TASKS[spec.type], args=(payload,), job_id=job_id, meta=meta, retry=self._retry(),
                    timeout=self.settings.job_timeout, result_ttl=self.settings.result_ttl,
                    failure_ttl=self.settings.failure_ttl, description=f"{spec.type} {vendor}/{spec.record_id}",
                ))
                pipe.zadd(KEY_VENDOR_JOBS.format(vendor), {job_id: created})
            # Keep the per-vendor index as long as the longest-lived job it can point at.
            pipe.zremrangebyscore(KEY_VENDOR_JOBS.format(vendor), 0, created - self.settings.failure_ttl)
            if batch_id:
                pipe.set(KEY_BATCH.format(batch_id), json.dumps(
                    {"vendor": vendor, "type": job_type, "created_at": created,
                     "job_ids": [d.job_id for d in datas]}), ex=self.settings.failure_ttl)
            jobs = queue.enqueue_many(datas, pipeline=pipe)
            # The admission and a feed in the same transaction: one round trip for the whole enqueue.
            self.fair.admit(pipe, queue.name, vendor, queue.pushed)
            self.fair.feed(self.queues[queue.name], pipe)
            pipe.execute()
        return batch_id, jobs

    def claim(self, vendor: str, key: str) -> tuple[str, Job | None]:
        """Claim an idempotency key for a new job id, or find the job that already holds it.

        Returns ``(job_id, None)`` when the caller should enqueue a job with that
        id, and ``(job_id, job)`` when the key was used before.
        """
        redis_key = KEY_IDEMPOTENCY.format(vendor, hashlib.sha256(key.encode()).hexdigest())
        job_id = uuid.uuid4().hex
        previous = self.conn.set(redis_key, job_id, nx=True, ex=self.settings.idempotency_ttl, get=True)
        if previous is None:
            return job_id, None
        try:
            return previous.decode(), Job.fetch(previous.decode(), connection=self.conn)
        except NoSuchJobError:
            # Claimed a moment ago by a request still enqueueing, or its job has expired.
            raise Conflict("a request with this idempotency_key is being processed; retry shortly") from None

    def release(self, vendor: str, key: str) -> None:
        """Forget an idempotency key whose job could not be enqueued."""
        self.conn.delete(KEY_IDEMPOTENCY.format(vendor, hashlib.sha256(key.encode()).hexdigest()))

    def job_for(self, vendor: str, job_id: str, *, operator: bool = False) -> Job:
        """The vendor's job, or NotFound: another vendor's job looks exactly like a missing one."""
        try:
            job = Job.fetch(job_id, connection=self.conn)
        except Exception:  # rq raises NoSuchJobError, or others for a malformed id
            raise NotFound(f"no job {job_id}") from None
        if job.meta.get("vendor") != vendor and not operator:
            raise NotFound(f"no job {job_id}")
        return job

    def job_view(self, job: Job) -> dict[str, Any]:
        """A job as API.md's poll answer."""
        meta = job.meta
        state = job.get_status(refresh=False) or JobStatus.QUEUED
        state = state.value if hasattr(state, "value") else str(state)
        result = error = None
        if state == JobStatus.FINISHED:
            result = job.return_value()
        elif state == JobStatus.FAILED:
            # A job killed by a timeout or a lost worker has no error of ours: still give a code.
            error = meta.get("error") or {"code": "internal", "message": "the job failed", "retryable": False}
        elif state == JobStatus.SCHEDULED:
            error = meta.get("error")  # why it waits for a retry
        return {
            "job_id": job.id, "type": meta.get("type"), "record_id": meta.get("record_id"),
            "batch_id": meta.get("batch_id"), "state": state, "progress": meta.get("progress", 0),
            "stage": meta.get("stage", "queued"), "attempts": meta.get("attempts", 0),
            "max_attempts": meta.get("max_attempts", self.settings.max_attempts),
            "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
            "ended_at": _iso(job.ended_at), "result": result, "error": error,
        }

    def batch_view(self, vendor: str, batch_id: str, *, operator: bool = False) -> dict[str, Any]:
        """Counts per state, overall progress and each job of a batch."""
        raw = self.conn.get(KEY_BATCH.format(batch_id))
        batch = json.loads(raw) if raw else None
        if batch is None or (batch["vendor"] != vendor and not operator):
            raise NotFound(f"no batch {batch_id}")
        counts = dict.fromkeys(STATES, 0)
        items, progress = [], 0
        # Only each job's status and meta (rq's Job.fetch_many reads and unpacks whole jobs:
        # a 500-job batch polled every 250 ms took a tenth of the CPU beside 2 workers).
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in batch["job_ids"]:
                pipe.hmget(Job.key_for(job_id), "status", "meta")
            fields = pipe.execute()
        for job_id, (status, raw_meta) in zip(batch["job_ids"], fields):
            if status is None:  # expired
                items.append({"job_id": job_id, "record_id": None, "state": "expired"})
                progress += 100
                continue
            state = status.decode()
            meta = SERIALIZER.loads(raw_meta) if raw_meta else {}
            counts[state] = counts.get(state, 0) + 1
            progress += 100 if state in DONE else meta.get("progress", 0)
            items.append({"job_id": job_id, "record_id": meta.get("record_id"), "state": state,
                          "progress": meta.get("progress", 0)})
        total = len(batch["job_ids"])
        return {"batch_id": batch_id, "type": batch["type"], "total": total, "counts": counts,
                "progress": round(progress / total) if total else 100,
                "done": sum(counts[s] for s in DONE), "jobs": items}

    def stats(self, vendor: str, *, operator: bool = False) -> dict[str, Any]:
        """Per-queue counts and workers, plus the vendor's own counts (every vendor's for an operator)."""
        queues = {}
        for name, q in self.queues.items():
            queues[name] = {
                "queued": q.count + self.fair.waiting(name),
                "started": StartedJobRegistry(queue=q).count,
                "scheduled": ScheduledJobRegistry(queue=q).count,
                "deferred": DeferredJobRegistry(queue=q).count,
                "finished": FinishedJobRegistry(queue=q).count,
                "failed": FailedJobRegistry(queue=q).count,
                "workers": Worker.count(connection=self.conn, queue=q),
            }
        if operator:
            prefix = KEY_VENDOR_JOBS.format("")
            names = sorted(k.decode()[len(prefix):] for k in self.conn.scan_iter(prefix + "*"))
            vendors = {name: self.vendor_counts(name) for name in names}
        else:
            vendors = {vendor: self.vendor_counts(vendor)}
        return {"queues": queues, "vendors": vendors}

    def vendor_counts(self, vendor: str) -> dict[str, int]:
        """How many of the vendor's jobs are in each state."""
        ids = [i.decode() for i in self.conn.zrange(KEY_VENDOR_JOBS.format(vendor), 0, -1)]
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(Job.key_for(job_id), "status")
            statuses = pipe.execute()
        counts = dict.fromkeys(STATES, 0)
        for status in statuses:
            if status is not None:
                counts[status.decode()] = counts.get(status.decode(), 0) + 1
        return counts

    def workers(self) -> int:
        """Worker processes registered with Redis (they heartbeat; dead ones expire)."""
        return Worker.count(connection=self.conn)
