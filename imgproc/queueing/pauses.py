"""Pause and resume a queue or a vendor: its jobs stay in their lanes, the feed goes past them.

A pause is a field in a Redis hash (``KEY_PAUSED_QUEUES``, ``KEY_PAUSED_VENDORS``:
name -> since when), which the fair share's feed reads (``imgproc.queueing.fairshare``):
a paused queue is not fed, a paused vendor's lanes are parked. Nothing is failed or
lost, and enqueues go on (their jobs wait in the lanes). The few jobs already fed
into the RQ queue (at most its room, a vendor's cap) go back to the front of their
lanes at the pause, so that no worker starts them; a job a worker took just before
the pause still runs. A resume puts the vendor's lanes back at the clock (never
ahead of the vendors that waited meanwhile) and feeds, each lane in its order.

rq's own ``suspend`` stops every worker at once (rq#1442): no other vendor's work
would go on meanwhile, which is the point of a pause here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis
from rq import Queue
from rq.job import Job

from imgproc.config import Settings
from imgproc.jobtypes import QUEUES

from .fairshare import COMMON, KEY_PAUSED_QUEUES, KEY_PAUSED_VENDORS, FairShare, for_queue
from .state import JobState

#: What can be paused: a queue (its every vendor) or a vendor (in every image queue).
KINDS = ("queue", "vendor")

# KEYS: fixed, the queue's group, rq queue list.  ARGV: fixed, (job id, vendor) pairs from its tail.
_PULL_BACK = (
    COMMON
    + """
local q, rq, back = group(FIXED_KEYS + 1), KEYS[FIXED_KEYS + 6], 0
-- the vendor's time goes back by the job's share, to that job's start: resumed, it goes where it was
local function refund(vendor)
  local share = 1 / planned(WEIGHTS, vendor, 1)
  for _, set in ipairs({q.ready, q.held, q.parked}) do
    local start = redis.call('ZSCORE', set, vendor)
    if start then
      redis.call('ZADD', set, num(tonumber(start) - share), vendor)
      return
    end
  end
  -- its lane had emptied: from its time if still ahead of the clock, else from the clock
  local start = tonumber(redis.call('ZSCORE', q.idle, vendor)) or clock(q)
  redis.call('ZREM', q.idle, vendor)
  redis.call('ZADD', paused(vendor) and q.parked or q.ready, num(start - share), vendor)
end
for i = FIXED_ARGS + 1, #ARGV, 2 do
  local id, vendor = ARGV[i], ARGV[i + 1]
  if redis.call('LREM', rq, 1, id) > 0 then  -- not taken by a worker meanwhile
    redis.call('LPUSH', LANES .. vendor, id)
    redis.call('SREM', ACTIVES .. vendor, id)
    refund(vendor)
    back = back + 1
  end
end
return back
"""
)

# KEYS: fixed, a group per queue.  ARGV: fixed, vendor.
_UNPARK = (
    COMMON
    + """
local vendor = ARGV[FIXED_ARGS + 1]
redis.call('HDEL', PAUSED_VENDORS, vendor)
for i = FIXED_KEYS + 1, #KEYS, 5 do
  local q = group(i)
  let_go(q, q.parked, vendor)
end
return 1
"""
)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Pauses:
    """The paused queues and vendors in front of the image queues of ``fair``."""

    def __init__(self, conn: redis.Redis, fair: FairShare):
        self.conn = conn
        self.fair = fair
        self._pull_back = conn.register_script(_PULL_BACK)
        self._unpark = conn.register_script(_UNPARK)

    @classmethod
    def of(cls, conn: redis.Redis, settings: Settings) -> Pauses:
        """The pauses in front of the image queues, fed as the workers feed them."""
        return cls(conn, for_queue(conn, settings, QUEUES[0]))

    def pause(self, kind: str, name: str) -> int:
        """Pause a queue or a vendor (``KINDS``); how many fed jobs went back to their lanes."""
        return self.pause_queue(name) if kind == "queue" else self.pause_vendor(name)

    def resume(self, kind: str, name: str) -> bool:
        """Resume a queue or a vendor (``KINDS``); whether it was paused."""
        return self.resume_queue(name) if kind == "queue" else self.resume_vendor(name)

    def pause_queue(self, queue: str) -> int:
        """Pause ``queue`` (again: nothing changes); how many fed jobs went back to their lanes."""
        self.conn.hsetnx(KEY_PAUSED_QUEUES, queue, time.time())
        return self._hold_back(queue, None)  # no feed moves anything now: the queue only shrinks

    def pause_vendor(self, vendor: str) -> int:
        """Pause ``vendor`` in every image queue; how many of its fed jobs went back to its lanes."""
        self.conn.hsetnx(KEY_PAUSED_VENDORS, vendor, time.time())
        return sum(self._hold_back(queue, vendor) for queue in self.fair.queues)

    def resume_queue(self, queue: str) -> bool:
        """Resume ``queue`` and feed it; whether it was paused."""
        was = bool(self.conn.hdel(KEY_PAUSED_QUEUES, queue))
        self.fair.feed(Queue(queue, connection=self.conn))
        return was

    def resume_vendor(self, vendor: str) -> bool:
        """Resume ``vendor``: its lanes back among the others at the clock, fed; whether it was paused."""
        was = self.conn.hexists(KEY_PAUSED_VENDORS, vendor)
        keys, args = self.fair.fixed("")
        for queue in self.fair.queues:
            keys += self.fair.group(queue)
        self._unpark(keys=keys, args=[*args, vendor])
        for queue in self.fair.queues:
            self.fair.feed(Queue(queue, connection=self.conn))
        return bool(was)

    def _hold_back(self, queue: str, vendor: str | None) -> int:
        """The jobs of ``queue`` (of ``vendor`` only, when given) fed but not taken: back to their lanes."""
        rq = Queue(queue, connection=self.conn)
        ids = [i.decode() for i in self.conn.lrange(rq.key, 0, -1)]
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(Job.key_for(job_id), "meta")
            owners = [JobState.loads(raw).vendor for raw in pipe.execute()]
        pairs = [
            (job_id, owner)
            for job_id, owner in zip(reversed(ids), reversed(owners), strict=True)
            if owner and (vendor is None or owner == vendor)  # a job with no vendor was never in a lane
        ]
        if not pairs:
            return 0
        keys, args = self.fair.fixed(queue)
        keys += [*self.fair.group(queue), rq.key]
        return int(self._pull_back(keys=keys, args=[*args, *(x for pair in pairs for x in pair)]))

    def listing(self) -> dict[str, list[dict[str, str]]]:
        """The paused queues and vendors, each with since when, by name."""
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.hgetall(KEY_PAUSED_QUEUES)
            pipe.hgetall(KEY_PAUSED_VENDORS)
            queues, vendors = pipe.execute()
        return {
            "queues": [{"queue": k.decode(), "since": _iso(float(v))} for k, v in sorted(queues.items())],
            "vendors": [{"vendor": k.decode(), "since": _iso(float(v))} for k, v in sorted(vendors.items())],
        }


def paused(pipe) -> None:
    """Read the names of the paused queues, then of the paused vendors, in the caller's pipeline."""
    pipe.hkeys(KEY_PAUSED_QUEUES)
    pipe.hkeys(KEY_PAUSED_VENDORS)


def counts(conn: redis.Redis) -> dict[str, int]:
    """How many queues and how many vendors are paused (``/metrics``)."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.hlen(KEY_PAUSED_QUEUES)
        pipe.hlen(KEY_PAUSED_VENDORS)
        queues, vendors = pipe.execute()
    return {"queue": queues, "vendor": vendors}


def is_paused(conn: redis.Redis, queue: str, vendor: str) -> bool:
    """Whether a job of ``vendor`` in ``queue`` waits paused (its queue's pause, or its vendor's)."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.hexists(KEY_PAUSED_QUEUES, queue)
        pipe.hexists(KEY_PAUSED_VENDORS, vendor)
        return any(pipe.execute())
