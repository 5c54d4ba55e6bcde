"""Enqueueing a webhook delivery on the webhooks queue: by the worker that announces it, or on redelivery.

The job runs ``imgproc.worker.webhooks.deliver``, named by its path, so that
the API (an operator's redeliver) enqueues it without importing the worker.
A delivery waits in its vendor's lane in front of the webhooks queue
(``fairshare.for_queue``), its retries too (``admit``, from the scheduler): a slow or dead
receiver holds only its own vendor's deliveries back.
"""

from __future__ import annotations

from collections import defaultdict

import redis
from rq import Queue, Retry
from rq.job import Job

from imgproc.config import Settings
from imgproc.jobtypes import QUEUE_WEBHOOKS, TASK_DELIVER

from .fairshare import for_queue
from .jobs import LaneQueue
from .state import JobState


def enqueue_delivery(conn: redis.Redis, settings: Settings, message_id: str, vendor: str) -> Job:
    """A delivery job for the message, with the configured retries, in the vendor's webhooks lane."""
    backoff = list(settings.webhook_backoff)
    queue = LaneQueue(QUEUE_WEBHOOKS, connection=conn)
    with conn.pipeline() as pipe:
        job = queue.enqueue(
            TASK_DELIVER,
            message_id,
            retry=Retry(max=len(backoff), interval=backoff) if backoff else None,
            job_timeout=int(settings.webhook_timeout) + 30,
            result_ttl=settings.result_ttl,
            failure_ttl=settings.failure_ttl,
            meta={"message_id": message_id, "vendor": vendor},
            description=f"webhook {message_id}",
            pipeline=pipe,
        )
        admit(pipe, conn, settings, [job])
        pipe.execute()
    return job


def admit(pipe: redis.client.Pipeline, conn: redis.Redis, settings: Settings, jobs: list[Job]) -> None:
    """Put deliveries, just saved as queued in ``pipe`` (not pushed), in their vendors' lanes; then a feed."""
    fair = for_queue(conn, settings, QUEUE_WEBHOOKS)
    by_vendor: dict[str, list[str]] = defaultdict(list)
    for job in jobs:
        by_vendor[JobState.of(job).vendor].append(job.id)
    for vendor, ids in by_vendor.items():
        fair.admit(pipe, QUEUE_WEBHOOKS, vendor, ids)
    fair.feed(Queue(QUEUE_WEBHOOKS, connection=conn), pipe)
