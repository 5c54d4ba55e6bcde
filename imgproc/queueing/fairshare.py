"""Fair share of the workers between vendors: per-vendor lanes in front of each RQ queue.

A new job waits in its vendor's lane (a Redis list) instead of the RQ queue.
``feed`` moves jobs from the lanes into the RQ queue one at a time, each
time from the vendor with the fewest jobs in the queue or running (ties go to
the vendor that waited longest for its turn), never past a vendor's ``cap``.
The vendors with waiting jobs sit in one sorted set scored by exactly that
(jobs active, then turn), so choosing one costs O(log vendors): the ring of
before walked every vendor and its jobs on every feed, 36 ms of Redis per
call at 10,000 vendors (``python -m bench.fairshare``). Workers ``release``
each job that ends, which keeps the counts exact; a job whose end was lost
(a worker killed) is found by the feed's rotating re-count.
So a vendor's 500-image bulk does not starve another vendor's single job: the
single job is taken at the next turn.

Why not rq's own tools: rq 2.x has no per-key concurrency limit (the
``RateLimit`` of rq 3 is not released), and a cap alone would not help when
there are no more workers than the cap; the order in which jobs reach the
workers has to change, which rq leaves to the queue list. The lanes keep rq's
queues, registries, retries and job hashes as they are.

The steps are Lua scripts, atomic across API processes and workers.
``feed`` runs after every enqueue and before every dequeue of a worker.

Webhook deliveries have lanes of their own in front of the webhooks queue
(``for_queue``), with their own count and cap per vendor
(``IMGPROC_WEBHOOK_VENDOR_CONCURRENCY``): a vendor whose receiver is slow or
dead holds that many delivery threads at most, and the other vendors'
webhooks go past it (one FIFO before: a receiver answering after 12 s held
another vendor's webhook back for 71 s).
"""

from __future__ import annotations

import redis
from rq import Queue

from imgproc.config import Settings
from imgproc.jobtypes import QUEUE_WEBHOOKS

KEY_LANE = "imgproc:lane:{queue}:{vendor}"
KEY_READY = "imgproc:ready:{queue}"  # vendors with waiting jobs, scored by (jobs active, turn)
KEY_TURN = "imgproc:turn:{queue}"  # the last turn handed out
KEY_SWEEP = "imgproc:sweep:{queue}"  # where the next re-count of vendors starts
KEY_ACTIVE = "imgproc:active:{vendor}"  # the vendor's jobs in an RQ queue or running
KEY_ACTIVE_WEBHOOKS = "imgproc:active-webhooks:{vendor}"  # the same for its webhook deliveries
# Before 0.2: vendors in turn order as a list and a set, walked whole by every feed.
KEY_RING = "imgproc:ring:{queue}"
KEY_RING_SET = "imgproc:ring-set:{queue}"

# A vendor's score in KEY_READY is active * TURNS + turn: fewest jobs active first, then the
# one whose turn is oldest. Scores are doubles, exact below 2^53: 2^40 turns, 2^13 jobs active.
TURNS = 2**40

# Shared by the scripts. rescore(ready, vendor, active, turn): put the vendor back with its count.
_COMMON = """
local TURNS = 1099511627776
local function rescore(ready, vendor, active, turn)
  redis.call('ZADD', ready, active * TURNS + turn, vendor)
end
local function turn_of(ready, vendor)
  local score = redis.call('ZSCORE', ready, vendor)
  if not score then return nil end
  return tonumber(score) % TURNS
end
"""

# KEYS: lane, ready, turn counter, active set.  ARGV: vendor, job ids...
_ADMIT = (
    _COMMON
    + """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  rescore(KEYS[2], ARGV[1], redis.call('SCARD', KEYS[4]), redis.call('INCR', KEYS[3]))
end
return 1
"""
)

# KEYS: rq queue list, ready, turn counter, old ring, old ring set, sweep cursor.
# ARGV: cap, room wanted, lane prefix, active prefix, rq job prefix, vendors to re-count per call.
_FEED = (
    _COMMON
    + """
local cap, room = tonumber(ARGV[1]), tonumber(ARGV[2]) - redis.call('LLEN', KEYS[1])
local ended = {finished=true, failed=true, canceled=true, stopped=true, scheduled=true}
local ready, lanes, actives, jobs = KEYS[2], ARGV[3], ARGV[4], ARGV[5]

-- jobs whose end the fair share was not told of (a worker killed mid-job): dropped when seen
local function count(vendor)
  local active = actives .. vendor
  for _, id in ipairs(redis.call('SMEMBERS', active)) do
    local status = redis.call('HGET', jobs .. id, 'status')
    if not status or ended[status] then redis.call('SREM', active, id) end
  end
  return redis.call('SCARD', active)
end

-- lanes left by the ring of before 0.2 join the ready set, in their turn order
if redis.call('EXISTS', KEYS[4]) == 1 then
  for _, vendor in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
    if not redis.call('ZSCORE', ready, vendor) then
      rescore(ready, vendor, count(vendor), redis.call('INCR', KEYS[3]))
    end
  end
  redis.call('DEL', KEYS[4], KEYS[5])
end

-- a few vendors, taken in rotation, are re-counted on every call: a count left too high by
-- a lost job end (a worker killed mid-job) holds its vendor back for a while, not for ever
local sweep = tonumber(redis.call('GET', KEYS[6]) or '0')
local batch = redis.call('ZRANGE', ready, sweep, sweep + tonumber(ARGV[6]) - 1)
for _, vendor in ipairs(batch) do
  rescore(ready, vendor, count(vendor), turn_of(ready, vendor))
end
redis.call('SET', KEYS[6], #batch > 0 and (sweep + #batch) or 0)

local moved = 0
while room > 0 do
  local head = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
  if #head == 0 then break end
  local vendor = head[1]
  local active = count(vendor)
  if active ~= math.floor(tonumber(head[2]) / TURNS) then
    rescore(ready, vendor, active, turn_of(ready, vendor))  -- its count was stale: choose again
  elseif active >= cap then
    break  -- the vendor with the fewest jobs active is at its cap: so is everyone
  else
    local lane = lanes .. vendor
    repeat
      local id = redis.call('LPOP', lane)
      -- a job cancelled (or expired) while it waited is dropped here
      if id and redis.call('HGET', jobs .. id, 'status') == 'queued' then
        redis.call('RPUSH', KEYS[1], id)
        redis.call('SADD', actives .. vendor, id)
        moved, room, active = moved + 1, room - 1, active + 1
        break
      end
    until not id
    if redis.call('LLEN', lane) > 0 then
      rescore(ready, vendor, active, redis.call('INCR', KEYS[3]))  -- to the back of the turns
    else
      redis.call('ZREM', ready, vendor)
    end
  end
end
return moved
"""
)

# KEYS: ready, active set.  ARGV: vendor, job id.
_RELEASE = (
    _COMMON
    + """
if redis.call('SREM', KEYS[2], ARGV[2]) == 1 then
  local turn = turn_of(KEYS[1], ARGV[1])
  if turn then rescore(KEYS[1], ARGV[1], redis.call('SCARD', KEYS[2]), turn) end
  return 1
end
return 0
"""
)

# KEYS: lane, ready.  ARGV: vendor, job id.
_WITHDRAW = """
local removed = redis.call('LREM', KEYS[1], 0, ARGV[2])
if removed > 0 and redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return removed
"""


class FairShare:
    """Per-vendor lanes and the feed into the RQ queues: fewest jobs active first, then in turn."""

    #: Vendors re-counted on each feed (see ``_FEED``); the rest of its work does not grow with vendors.
    SWEEP = 2

    def __init__(self, conn: redis.Redis, cap: int, room: int = 2, active: str = KEY_ACTIVE):
        self.conn = conn
        self.cap = cap
        #: Where each vendor's jobs in progress are counted (image jobs: across all image queues).
        self.active = active
        #: Jobs kept ready in each RQ queue: enough that a free worker never waits on a feed,
        #: few enough that a newcomer's job is near the front.
        self.room = room
        self._feed = conn.register_script(_FEED)
        self._release = conn.register_script(_RELEASE)
        self._withdraw = conn.register_script(_WITHDRAW)

    def admit(self, pipe, queue: str, vendor: str, job_ids: list[str]) -> None:
        """Put new jobs at the end of the vendor's lane, in the caller's transaction.

        EVAL with the script's text rather than redis-py's Script: in a pipeline,
        a Script costs a SCRIPT EXISTS round trip before every transaction, and
        an EVALSHA that Redis no longer knows (after a restart) would fail inside
        the transaction while the job hashes beside it are written.
        """
        pipe.eval(
            _ADMIT,
            4,
            KEY_LANE.format(queue=queue, vendor=vendor),
            KEY_READY.format(queue=queue),
            KEY_TURN.format(queue=queue),
            self.active.format(vendor=vendor),
            vendor,
            *job_ids,
        )

    def feed(self, queue: Queue, pipe=None) -> int | None:
        """Move waiting jobs into the RQ queue within each vendor's cap, fewest jobs active first.

        With ``pipe``, the feed is queued in the caller's transaction (as EVAL, see
        ``admit``) and nothing is returned; else it runs now and returns how many moved.
        """
        name = queue.name
        keys = [
            queue.key,
            KEY_READY.format(queue=name),
            KEY_TURN.format(queue=name),
            KEY_RING.format(queue=name),
            KEY_RING_SET.format(queue=name),
            KEY_SWEEP.format(queue=name),
        ]
        args = [
            self.cap,
            self.room,
            KEY_LANE.format(queue=name, vendor=""),
            self.active.format(vendor=""),
            queue.job_class.redis_job_namespace_prefix,
            self.SWEEP,
        ]
        if pipe is not None:
            pipe.eval(_FEED, len(keys), *keys, *args)
            return None
        return int(self._feed(keys=keys, args=args))

    def release(self, queue: str, vendor: str, job_id: str, pipe=None) -> bool | None:
        """A job of ``vendor`` has left the RQ queue for good (ended, or scheduled for a retry).

        With ``pipe``, queued in the caller's transaction (as EVAL, see ``admit``); else run now.
        """
        keys = [KEY_READY.format(queue=queue), self.active.format(vendor=vendor)]
        if pipe is not None:
            pipe.eval(_RELEASE, len(keys), *keys, vendor, job_id)
            return None
        return bool(self._release(keys=keys, args=[vendor, job_id]))

    def withdraw(self, queue: str, vendor: str, job_id: str) -> bool:
        """Take a cancelled job out of its vendor's lane, so that it no longer counts as waiting."""
        keys = [KEY_LANE.format(queue=queue, vendor=vendor), KEY_READY.format(queue=queue)]
        return bool(self._withdraw(keys=keys, args=[vendor, job_id]))

    def waiting(self, queue: str) -> int:
        """Jobs still in the lanes of ``queue``."""
        vendors = [v.decode() for v in self.conn.zrange(KEY_READY.format(queue=queue), 0, -1)]
        with self.conn.pipeline(transaction=False) as pipe:
            for vendor in vendors:
                pipe.llen(KEY_LANE.format(queue=queue, vendor=vendor))
            return sum(pipe.execute())


def for_queue(conn: redis.Redis, settings: Settings, queue: str) -> FairShare:
    """The fair share in front of ``queue``: webhook deliveries are counted and capped apart from jobs."""
    if queue == QUEUE_WEBHOOKS:
        return FairShare(conn, settings.webhook_vendor_concurrency, active=KEY_ACTIVE_WEBHOOKS)
    return FairShare(conn, settings.vendor_concurrency)
