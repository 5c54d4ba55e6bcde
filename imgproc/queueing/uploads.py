"""Uploaded photos wait in Redis beside their job, so that a worker on any host can read them.

An upload is kept until its job ends for good (finished, failed with no retry
left, cancelled, stopped), then dropped: kept for the result's lifetime, a
failed 20 MiB upload pinned Redis memory for 24 h. What one vendor holds at
once is bounded (``IMGPROC_VENDOR_UPLOAD_BYTES``, ``429 too_many_uploads``):
each vendor's uploads are counted in bytes, and an entry whose upload expired
without being dropped (its job lost) leaves the count at the next upload.
"""

from __future__ import annotations

import time

import redis
from rq.job import Job

from imgproc.errors import TooManyUploads
from imgproc.jobtypes import Payload

from .keys import KEY_UPLOAD, KEY_UPLOAD_EXPIRIES, KEY_UPLOAD_HELD, KEY_UPLOAD_SIZES

# KEYS: upload, held bytes, sizes (job id -> bytes), expiries (job id -> Unix time).
# ARGV: job id, data, ttl (s), limit (bytes, 0: none), now (s). Returns {stored (1/0), bytes held}.
_HOLD = """
local now = tonumber(ARGV[5])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)) do
  local size = redis.call('HGET', KEYS[3], id)
  if size then
    redis.call('DECRBY', KEYS[2], size)
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[4], id)
end
local held, size = tonumber(redis.call('GET', KEYS[2]) or '0'), string.len(ARGV[2])
local limit, ttl = tonumber(ARGV[4]), tonumber(ARGV[3])
if limit > 0 and held + size > limit then return {0, held} end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
redis.call('INCRBY', KEYS[2], size)
redis.call('HSET', KEYS[3], ARGV[1], size)
redis.call('ZADD', KEYS[4], now + ttl, ARGV[1])
for i = 2, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
return {1, held + size}
"""

# KEYS: as _HOLD's.  ARGV: job id.
_DROP = """
redis.call('DEL', KEYS[1])
local size = redis.call('HGET', KEYS[3], ARGV[1])
if size then
  redis.call('DECRBY', KEYS[2], size)
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return size
"""


def _keys(vendor: str, job_id: str) -> list[str]:
    return [
        KEY_UPLOAD.format(job_id),
        KEY_UPLOAD_HELD.format(vendor),
        KEY_UPLOAD_SIZES.format(vendor),
        KEY_UPLOAD_EXPIRIES.format(vendor),
    ]


def hold(conn: redis.Redis, vendor: str, job_id: str, data: bytes, ttl: int, limit: int) -> None:
    """Keep ``data`` for the job, within the vendor's ``limit`` bytes (0: none); TooManyUploads over it."""
    stored, held = conn.eval(_HOLD, 4, *_keys(vendor, job_id), job_id, data, ttl, limit, int(time.time()))
    if not stored:
        raise TooManyUploads(
            f"{held} bytes of this vendor's uploads wait for their jobs and this one has {len(data)}; "
            f"at most {limit} at once (IMGPROC_VENDOR_UPLOAD_BYTES): send it again when some have ended",
            details={"held": held, "limit": limit},
        )


def get(conn: redis.Redis, job_id: str) -> bytes | None:
    """The job's uploaded photo, or None when it has expired."""
    return conn.get(KEY_UPLOAD.format(job_id))


def kept(conn: redis.Redis, job: Job) -> bool:
    """Whether the job's photo can still be read: False for an upload dropped when its job ended."""
    payload = Payload.of(job)
    return payload is None or not payload.upload or bool(conn.exists(KEY_UPLOAD.format(job.id)))


def held(conn: redis.Redis, vendor: str) -> int:
    """Bytes of the vendor's uploads waiting in Redis."""
    return int(conn.get(KEY_UPLOAD_HELD.format(vendor)) or 0)


def drop(conn: redis.Redis, vendor: str, job_id: str) -> None:
    """Forget the photo of a job that has finished with it, and take it off the vendor's count."""
    conn.eval(_DROP, 4, *_keys(vendor, job_id), job_id)


def drop_for(conn: redis.Redis, job: Job) -> None:
    """Forget the photo of a job that has ended for good, if it had one (its payload says)."""
    payload = Payload.of(job)
    if payload is not None and payload.upload:
        drop(conn, payload.vendor, job.id)
