"""Acting on every job a filter finds: cancel or retry them, after a dry run that counts them.

The dry run and the action decide alike (``_refusal``): a job the action
cannot take (a started job to cancel, an unfailed one to retry, a failed
upload whose photo was dropped) is a refusal in both, with its reason; the
dry run's count is what the action then does, unless jobs change meanwhile
(those show as refusals of the action). Jobs are taken oldest first, so that
retried jobs keep their order in their vendor's lane; ``most`` caps one call
(the answer's ``remaining`` says how many are left for the next).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

from imgproc.jobtypes import QUEUE_WEBHOOKS, TASK_COMPLETE_BATCH

from . import batches, events, uploads
from .jobfilter import JobFilter
from .jobs import JobQueue
from .retries import RetryRefused, retry
from .search import Search
from .state import JobState

ACTIONS = ("cancel", "retry")
#: States a cancel takes (a started job is stopped, one at a time: DELETE /job/<id>).
CANCELABLE = ("queued", "scheduled", "deferred")
#: Refusals listed by job id in an answer; past them they are only counted.
LISTED = 100
#: Jobs whose whole record is read at a time to see whether a retry can take them.
CHUNK = 500


@dataclass
class Outcome:
    """What a bulk action did (or, for a dry run, would do)."""

    action: str
    flt: JobFilter
    dry_run: bool
    matched: int = 0
    count: int = 0
    remaining: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)
    refused_count: int = 0
    #: The jobs acted on (or to act on), oldest first.
    job_ids: list[str] = field(default_factory=list)

    def refuse(self, job_id: str, reason: str) -> None:
        self.refused_count += 1
        if len(self.refused) < LISTED:
            self.refused.append({"job_id": job_id, "reason": reason})

    def asdict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "filter": self.flt.given(),
            "dry_run": self.dry_run,
            "count": self.count,
            "matched": self.matched,
            "remaining": self.remaining,
            "refused": self.refused,
            "refused_count": self.refused_count,
        }


def _refusal(action: str, status: str) -> str | None:
    """Why ``action`` cannot take a job in ``status`` (before its photo is looked at), or None."""
    if action == "cancel":
        if status == "started":
            return "started: stop it on its own (DELETE /api/image-queue/job/<id>)"
        return None if status in CANCELABLE else f"has ended ({status})"
    return None if status == "failed" else f"is {status}, not failed"


def plan(jobs: JobQueue, flt: JobFilter, action: str, most: int | None = None) -> Outcome:
    """The dry run: the jobs the action would take, oldest first, and those it would refuse."""
    if action not in ACTIONS:
        raise ValueError(f"no bulk action {action!r}")
    outcome = Outcome(action, flt, dry_run=True)
    keep = jobs.settings.failure_ttl
    takers = []
    # A job moved between two sets while they were read shows in both: its last reading counts.
    found = {job_id: (score, status) for score, job_id, status, _ in Search(jobs.conn, flt, keep).each()}
    for job_id, (_, status) in sorted(found.items(), key=lambda item: (item[1][0], item[0])):
        outcome.matched += 1
        reason = _refusal(action, status)
        if reason:
            outcome.refuse(job_id, reason)
        else:
            takers.append(job_id)
    if action == "retry":  # an upload dropped when its job failed cannot run again
        kept = []
        for start in range(0, len(takers), CHUNK):
            part = takers[start : start + CHUNK]
            for job_id, job in zip(part, Job.fetch_many(part, connection=jobs.conn), strict=True):
                if job is None:
                    outcome.refuse(job_id, "has expired")
                elif not uploads.kept(jobs.conn, job):
                    outcome.refuse(job_id, "its uploaded photo was dropped when it failed: upload it again")
                else:
                    kept.append(job_id)
        takers = kept
    shown = takers if most is None else takers[:most]
    outcome.job_ids, outcome.count, outcome.remaining = shown, len(shown), len(takers) - len(shown)
    return outcome


def act(
    jobs: JobQueue,
    flt: JobFilter,
    action: str,
    most: int | None = None,
    before: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Cancel or retry the jobs of ``plan``; ``before`` sees the plan first (and may refuse it: raise)."""
    outcome = plan(jobs, flt, action, most)
    if before is not None:
        before(outcome)
    outcome.dry_run = False
    done = []
    for job_id in outcome.job_ids:
        try:
            job = Job.fetch(job_id, connection=jobs.conn)
        except NoSuchJobError:
            outcome.refuse(job_id, "has expired")
            continue
        if action == "retry":
            try:
                retry(jobs, job)
            except RetryRefused as exc:  # retried or changed by someone else meanwhile
                outcome.refuse(job_id, str(exc))
                continue
        else:
            status = job.get_status(refresh=False)
            reason = _refusal(action, str(getattr(status, "value", status)))
            if reason:
                outcome.refuse(job_id, reason)
                continue
            cancel(jobs, job)
        done.append(job_id)
    outcome.job_ids, outcome.count = done, len(done)
    return outcome


def cancel(jobs: JobQueue, job: Job) -> None:
    """Cancel a waiting job as ``DELETE /job/<id>`` does: its event, and its batch's end when last."""
    jobs.cancel(job)
    job.refresh()
    events.publish(jobs.conn, jobs.job_view(job), events.STATE, jobs.settings.failure_ttl)
    batch_id = JobState.of(job).batch_id
    found = batches.batch(jobs.conn, batch_id) if batch_id else None
    if found and found.get("webhook_url"):
        ttl = jobs.settings.failure_ttl
        if batches.mark_ended(jobs.conn, batch_id, job.id, len(found["job_ids"]), ttl):
            Queue(QUEUE_WEBHOOKS, connection=jobs.conn).enqueue(
                TASK_COMPLETE_BATCH, batch_id, result_ttl=jobs.settings.result_ttl
            )
