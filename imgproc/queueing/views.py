"""Reading jobs back for their vendor: one job, a batch, counts per queue and per vendor."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue, worker_registration
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.worker import Worker

from imgproc.config import Settings
from imgproc.errors import NotFound
from imgproc.jobtypes import QUEUE_WEBHOOKS

from . import pauses
from .fairshare import FairShare
from .keys import DONE, KEY_BATCH, KEY_VENDOR_JOBS, STATES
from .plain import plain
from .state import JobState

#: The states counted per queue in ``stats``, as API.md lists them.
QUEUE_STATES = ("queued", "started", "scheduled", "deferred", "finished", "failed")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def absolute_url(url: str, base: str) -> str:
    """``url`` on ``base`` when it is relative to the API (local storage's ``/media/<key>``), else itself."""
    if base and url.startswith("/") and not url.startswith("//"):
        return base.rstrip("/") + url
    return url


def with_base(view: dict[str, Any], base: str) -> dict[str, Any]:
    """A job view whose result URL is absolute on ``base`` (the view itself when there is nothing to do)."""
    result = view.get("result")
    if not base or not isinstance(result, dict) or not isinstance(result.get("url"), str):
        return view
    return {**view, "result": {**result, "url": absolute_url(result["url"], base)}}


def job_view(job: Job, settings: Settings, result: Any = None, base: str = "") -> dict[str, Any]:
    """A job as API.md's poll answer; ``result``: a finished job's return value when the caller has it.

    The result's URL is as stored (relative to the API for local storage) unless ``base`` is given:
    the address the API answers on, which only the reader knows.
    """
    # What was stored may not be JSON (a bug, an older worker): shown as text, never a failed read.
    state_of = JobState(plain(job.meta, strict=False))
    state = job.get_status(refresh=False) or JobStatus.QUEUED
    state = state.value if hasattr(state, "value") else str(state)
    error = None
    if state != JobStatus.FINISHED:
        result = None
    elif result is None:
        result = job.return_value()
    result = plain(result, strict=False)
    if state == JobStatus.FAILED:
        # A job killed by a timeout or a lost worker has no error of ours: still give a code.
        error = state_of.error or {"code": "internal", "message": "the job failed", "retryable": False}
    elif state == JobStatus.SCHEDULED:
        error = state_of.error  # why it waits for a retry
    view = {
        "job_id": job.id,
        "type": state_of.type,
        "record_id": state_of.record_id,
        "batch_id": state_of.batch_id,
        "state": state,
        "progress": state_of.progress,
        "stage": state_of.stage,
        "attempts": state_of.attempts,
        "max_attempts": state_of.max_attempts(settings.max_attempts),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
        "result": result,
        "error": error,
        # Its webhook's delivery, when the request named a webhook_url and the job has ended.
        "webhook": state_of.webhook,
        # Its row in the vendor's own table (IMGPROC_WRITEBACK_FILE): written, not_found, ambiguous...
        "writeback": state_of.writeback,
    }
    return with_base(view, base)


class JobViews:
    """A vendor's jobs, batches and counts as API.md shows them; another vendor's look missing.

    The read half of ``JobQueue`` (``imgproc.queueing.jobs``), which builds these fields.
    """

    conn: redis.Redis
    settings: Settings
    fair: FairShare
    queues: dict[str, Queue]

    def job_for(self, vendor: str, job_id: str, *, operator: bool = False) -> Job:
        """The vendor's job, or NotFound: another vendor's job looks exactly like a missing one.

        Only a missing job is NotFound: a Redis error propagates (the API's 503, which a client retries).
        """
        try:
            job = Job.fetch(job_id, connection=self.conn)
        except (NoSuchJobError, ValueError):  # missing, or a malformed id or hash (rq's ValueError)
            raise NotFound(f"no job {job_id}") from None
        if JobState.of(job).vendor != vendor and not operator:
            raise NotFound(f"no job {job_id}")
        return job

    def job_view(self, job: Job, base: str = "") -> dict[str, Any]:
        """A job as API.md's poll answer, its result's URL absolute on ``base`` when given.

        A queued job of a paused queue or vendor says ``paused``: it waits in its lane until a resume.
        """
        view = job_view(job, self.settings, base=base)
        if view["state"] == JobStatus.QUEUED and pauses.is_paused(
            self.conn, job.origin, JobState.of(job).vendor
        ):
            view["state"] = "paused"
        return view

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
                pipe.hmget(Job.key_for(job_id), "status", "origin", "meta")
            pauses.paused(pipe)
            *fields, paused_queues, paused_vendors = pipe.execute()
        paused_queues = {q.decode() for q in paused_queues}
        held = batch["vendor"].encode() in paused_vendors
        for job_id, (status, origin, raw_meta) in zip(batch["job_ids"], fields, strict=True):
            if status is None:  # expired
                items.append({"job_id": job_id, "record_id": None, "state": "expired"})
                progress += 100
                continue
            state = status.decode()
            job_state = JobState.loads(raw_meta)
            counts[state] = counts.get(state, 0) + 1
            progress += 100 if state in DONE else job_state.progress
            if state == JobStatus.QUEUED and (held or (origin or b"").decode() in paused_queues):
                state = "paused"  # counted as queued, shown as the job's own view shows it
            item = {
                "job_id": job_id,
                "record_id": job_state.record_id,
                "state": state,
                "progress": job_state.progress,
                "stage": job_state.stage,
            }
            items.append(plain(item, strict=False))  # as job_view: a stored value never fails the view
        total = len(batch["job_ids"])
        return {
            "batch_id": batch_id,
            "type": batch["type"],
            "total": total,
            "counts": counts,
            "progress": round(progress / total) if total else 100,
            "done": sum(counts[s] for s in DONE),
            "jobs": items,
        }

    def stats(self, vendor: str, *, operator: bool = False) -> dict[str, Any]:
        """Counts per queue and per vendor: of the vendor's own jobs only, of everyone's for an operator.

        Nothing in a vendor's answer moves when another vendor's jobs run (API.md: a
        vendor never counts another's jobs); only the number of workers is shared.
        """
        workers = {name: Worker.count(connection=self.conn, queue=q) for name, q in self.queues.items()}
        webhooks = self.webhook_backlog()
        with self.conn.pipeline(transaction=False) as pipe:
            pauses.paused(pipe)
            paused_queues, paused_vendors = ({n.decode() for n in names} for names in pipe.execute())
        if not operator:
            per_queue, counts = self._vendor_jobs(vendor)
            queues = {
                name: {
                    **{s: per_queue[name][s] for s in QUEUE_STATES},
                    "workers": workers[name],
                    "paused": name in paused_queues,
                }
                for name in self.queues
            }
            # Whether anyone delivers webhooks now; how many wait is everyone's business, not a vendor's.
            delivering = webhooks["workers"]
            warning = None if delivering else "no worker delivers webhooks now: yours wait until one starts"
            return {
                "queues": queues,
                "vendors": {vendor: counts},
                "webhooks": {"workers": delivering, "warning": warning},
                # What is paused of what the vendor's jobs wait on: its queues, itself.
                "paused": {"queues": sorted(paused_queues), "vendors": sorted(paused_vendors & {vendor})},
            }
        queues = {}
        for name, q in self.queues.items():
            queues[name] = {
                "queued": q.count + self.fair.waiting(name),
                "started": StartedJobRegistry(queue=q).count,
                "scheduled": ScheduledJobRegistry(queue=q).count,
                "deferred": DeferredJobRegistry(queue=q).count,
                "finished": FinishedJobRegistry(queue=q).count,
                "failed": FailedJobRegistry(queue=q).count,
                "workers": workers[name],
                "paused": name in paused_queues,
            }
        prefix = KEY_VENDOR_JOBS.format("")
        names = sorted(k.decode()[len(prefix) :] for k in self.conn.scan_iter(prefix + "*"))
        return {
            "queues": queues,
            "vendors": {name: self.vendor_counts(name) for name in names},
            "webhooks": webhooks,
            "paused": {"queues": sorted(paused_queues), "vendors": sorted(paused_vendors)},
        }

    def vendor_counts(self, vendor: str) -> dict[str, int]:
        """How many of the vendor's jobs are in each state."""
        return self._vendor_jobs(vendor)[1]

    def _vendor_jobs(self, vendor: str) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """The vendor's jobs counted per queue and state, and per state over all queues."""
        ids = [i.decode() for i in self.conn.zrange(KEY_VENDOR_JOBS.format(vendor), 0, -1)]
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(Job.key_for(job_id), "status", "origin")
            fields = pipe.execute()
        per_queue = {name: dict.fromkeys(STATES, 0) for name in self.queues}
        counts = dict.fromkeys(STATES, 0)
        for status, origin in fields:
            if status is None:  # expired
                continue
            state = status.decode()
            counts[state] = counts.get(state, 0) + 1
            queue = per_queue.get(origin.decode() if origin else "")
            if queue is not None:
                queue[state] = queue.get(state, 0) + 1
        return per_queue, counts

    def load(self) -> dict[str, dict[str, int]]:
        """Per queue, webhooks too: jobs waiting (lanes included), running, workers listening (/metrics)."""
        queues = {**self.queues, QUEUE_WEBHOOKS: Queue(QUEUE_WEBHOOKS, connection=self.conn)}
        return {
            name: {
                "depth": q.count + self.fair.waiting(name),
                "running": StartedJobRegistry(queue=q).count,
                "workers": Worker.count(connection=self.conn, queue=q),
            }
            for name, q in queues.items()
        }

    def workers(self) -> int:
        """Image workers registered with Redis (they heartbeat; dead ones expire); webhook workers aside."""
        return len(set().union(*(worker_registration.get_keys(queue=q) for q in self.queues.values())))

    def webhook_backlog(self) -> dict[str, Any]:
        """Webhook deliveries waiting (in lanes, queued, for a retry), the workers delivering them, a warning.

        Image workers deliver them on a thread of their own (``imgproc.worker.delivery``), each counted
        here as a worker of the webhooks queue; none while deliveries wait means none will arrive.
        """
        queue = Queue(QUEUE_WEBHOOKS, connection=self.conn)
        waiting = queue.count + self.fair.waiting(QUEUE_WEBHOOKS) + ScheduledJobRegistry(queue=queue).count
        workers = Worker.count(connection=self.conn, queue=queue)
        warning = None
        if waiting and not workers:
            warning = (
                f"{waiting} webhook deliver{'y' if waiting == 1 else 'ies'} waiting and no worker "
                "delivers them: start python worker.py (it delivers webhooks unless "
                "IMGPROC_WEBHOOK_THREAD=0) or python worker.py --queues webhooks"
            )
        return {"waiting": waiting, "workers": workers, "warning": warning}
