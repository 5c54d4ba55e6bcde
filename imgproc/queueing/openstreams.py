"""Each vendor's open event streams, counted in Redis across every API process, up to a cap.

An open stream holds one request thread of an API process for as long as its job runs: without a cap
one vendor could hold them all. Each stream holds a lease, a member of the vendor's sorted set scored
by when the lease ends; the stream renews it while open and gives it back when it ends, and a lease
of a killed process lapses by itself, so no count leaks.
"""

from __future__ import annotations

import logging
import time
import uuid

import redis

log = logging.getLogger(__name__)

#: Vendor -> sorted set of its open streams' leases, scored by when each ends (ms).
KEY_OPEN_STREAMS = "imgproc:open-streams:{}"
#: Seconds a lease lasts unless renewed; a stream renews it every ``LEASE / 4`` (it wakes every 5 s at
#: most, writes every 15 s at most), so only a stream whose process died lets its lease lapse.
LEASE = 60.0

# KEYS: the vendor's set. ARGV: now (ms), the lease's token, its length (ms), the cap. 1: taken, 0: full.
_TAKE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class Lease:
    """One open stream's place among its vendor's: ``renew`` while open, ``release`` when it ends."""

    def __init__(self, streams: OpenStreams, vendor: str):
        self.streams, self.key, self.token = streams, KEY_OPEN_STREAMS.format(vendor), uuid.uuid4().hex
        self.renewed = time.monotonic()

    def renew(self) -> None:
        """Extend the lease when a quarter of it has passed (one round trip then, none otherwise)."""
        if time.monotonic() - self.renewed < self.streams.lease / 4:
            return
        self.renewed = time.monotonic()
        ms = int(self.streams.lease * 1000)
        with self.streams.conn.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, {self.token: int(time.time() * 1000) + ms})
            pipe.pexpire(self.key, ms)
            pipe.execute()

    def release(self) -> None:
        """Give the place back (a Redis error leaves it to lapse with its lease)."""
        try:
            self.streams.conn.zrem(self.key, self.token)
        except redis.RedisError as exc:
            log.warning("could not give back an event stream's place: %s", exc)


class OpenStreams:
    """At most ``cap`` open streams per vendor, whichever API processes serve them."""

    def __init__(self, conn: redis.Redis, cap: int, lease: float = LEASE):
        self.conn, self.cap, self.lease = conn, cap, lease
        self._take = conn.register_script(_TAKE)

    def take(self, vendor: str) -> Lease | None:
        """A lease for one more of ``vendor``'s streams, or None when it has ``cap`` open."""
        lease = Lease(self, vendor)
        now = int(time.time() * 1000)
        taken = self._take(keys=[lease.key], args=[now, lease.token, int(self.lease * 1000), self.cap])
        return lease if taken else None

    def count(self, vendor: str) -> int:
        """How many of ``vendor``'s streams hold a lease now."""
        return self.conn.zcount(KEY_OPEN_STREAMS.format(vendor), int(time.time() * 1000), "+inf")
