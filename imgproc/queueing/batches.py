"""Which jobs of a bulk request have ended for good, so that its completion is announced once."""

from __future__ import annotations

import json
from typing import Any

import redis

from .keys import KEY_BATCH

#: Set of the job ids of a batch that have ended for good.
KEY_BATCH_ENDED = "imgproc:batch-ended:{}"


def batch(conn: redis.Redis, batch_id: str) -> dict[str, Any] | None:
    """The batch's record (vendor, type, job ids, webhook URL), or None once expired."""
    raw = conn.get(KEY_BATCH.format(batch_id))
    return json.loads(raw) if raw else None


def mark_ended(conn: redis.Redis, batch_id: str, job_id: str, total: int, ttl: int) -> bool:
    """Note that ``job_id`` ended; True for exactly one call: the one that ended the batch's last job.

    A set rather than a counter: a job that ends twice (an operator retried it)
    counts once, and the batch completes once.
    """
    key = KEY_BATCH_ENDED.format(batch_id)
    with conn.pipeline(transaction=True) as pipe:
        pipe.sadd(key, job_id)
        pipe.scard(key)
        pipe.expire(key, ttl)
        added, count, _ = pipe.execute()
    return bool(added) and count == total
