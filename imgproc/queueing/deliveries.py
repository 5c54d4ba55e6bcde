"""Enqueueing a webhook delivery on the webhooks queue: by the worker that announces it, or on redelivery.

The job runs ``imgproc.worker.webhooks.deliver``, named by its path, so that
the API (an operator's redeliver) enqueues it without importing the worker.
"""

from __future__ import annotations

import redis
from rq import Queue, Retry
from rq.job import Job

from imgproc.config import Settings
from imgproc.jobtypes import QUEUE_WEBHOOKS, TASK_DELIVER


def enqueue_delivery(conn: redis.Redis, settings: Settings, message_id: str, vendor: str) -> Job:
    """A delivery job for the message, with the configured retries, on the webhooks queue."""
    backoff = list(settings.webhook_backoff)
    queue = Queue(QUEUE_WEBHOOKS, connection=conn)
    return queue.enqueue(
        TASK_DELIVER,
        message_id,
        retry=Retry(max=len(backoff), interval=backoff) if backoff else None,
        job_timeout=int(settings.webhook_timeout) + 30,
        result_ttl=settings.result_ttl,
        failure_ttl=settings.failure_ttl,
        meta={"message_id": message_id, "vendor": vendor},
        description=f"webhook {message_id}",
    )
