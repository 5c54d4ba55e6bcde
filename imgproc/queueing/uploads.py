"""Uploaded photos wait in Redis beside their job, so that a worker on any host can read them."""

from __future__ import annotations

import redis

from .keys import KEY_UPLOAD


def put(pipe: redis.client.Pipeline, job_id: str, data: bytes, ttl: int) -> None:
    """Keep ``data`` for the job, in the caller's enqueue transaction."""
    pipe.set(KEY_UPLOAD.format(job_id), data, ex=ttl)


def get(conn: redis.Redis, job_id: str) -> bytes | None:
    """The job's uploaded photo, or None when it has expired."""
    return conn.get(KEY_UPLOAD.format(job_id))


def drop(conn: redis.Redis, job_id: str) -> None:
    """Forget the photo of a job that has finished with it."""
    conn.delete(KEY_UPLOAD.format(job_id))
