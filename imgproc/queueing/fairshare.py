"""Fair share of the workers between vendors: per-vendor lanes in front of each RQ queue.

A new job waits in its vendor's lane (a Redis list) instead of the RQ queue.
``feed`` moves jobs from the lanes into the RQ queue one at a time, each time
from the vendor whose virtual time is lowest (start-time fair queueing): each
job fed advances its vendor's time by 1 / weight, so over a window a vendor of
weight 2 gets twice the job starts of a vendor of weight 1 while both wait. A
vendor that arrives (its lane was empty) starts at the queue's clock, the time
of the last job fed, so its first job goes next whatever the others' backlog:
the newcomer rule. Weights and caps are the vendors' plans' (``KEY_PLAN_WEIGHT``,
``KEY_PLAN_CAP``: absent, weight 1 and the FairShare's ``cap``).

Per queue, a vendor with waiting jobs sits in one of three sorted sets scored by
its virtual time: ``ready`` (the feed reads its head, O(log vendors)), ``held``
(at its cap on jobs queued or running: back to ``ready`` when one of its jobs
ends, ``release``) or ``parked`` (paused, ``imgproc.queueing.pauses``). So the
choice costs the same with 5 vendors waiting or 10,000 (``python -m
bench.fairshare``), and a vendor at its cap never blocks the others. A job whose
end was lost (a worker killed) is found by the feed's rotating re-count of held
vendors. A paused queue is not fed at all.

Why not rq's own tools: rq 2.x has no per-key concurrency limit (the
``RateLimit`` of rq 3 is not released), and a cap alone would not help when
there are no more workers than the cap; the order in which jobs reach the
workers has to change, which rq leaves to the queue list. The lanes keep rq's
queues, registries, retries and job hashes as they are.

The steps are Lua scripts, atomic across API processes and workers.
``feed`` runs after every enqueue and before every dequeue of a worker.

Webhook deliveries have lanes of their own in front of the webhooks queue
(``for_queue``), with their own count and cap per vendor
(``IMGPROC_WEBHOOK_VENDOR_CONCURRENCY``), weight 1 and no vendor pauses: a
vendor whose receiver is slow or dead holds that many delivery threads at most,
and the other vendors' webhooks go past it.
"""

from __future__ import annotations

import redis
from rq import Queue
from rq.job import Job

from imgproc.config import Settings
from imgproc.jobtypes import QUEUE_WEBHOOKS, QUEUES

from .keys import KEY_PLAN_CAP, KEY_PLAN_WEIGHT

KEY_LANE = "imgproc:lane:{queue}:{vendor}"
# Per queue, the vendors with waiting jobs by virtual start time: eligible, at their cap, paused.
KEY_READY = "imgproc:fair:{queue}"
KEY_HELD = "imgproc:fair-held:{queue}"
KEY_PARKED = "imgproc:fair-parked:{queue}"
# Vendors whose lane emptied, by the virtual time their next job would start at, while it is ahead
# of the clock: one that sends job after job is not a newcomer each time.
KEY_IDLE = "imgproc:fair-idle:{queue}"
KEY_CLOCK = "imgproc:fair-clock:{queue}"  # the virtual start time of the last job fed
KEY_SWEEP = "imgproc:sweep:{queue}"  # where the next re-count of held vendors starts
KEY_ACTIVE = "imgproc:active:{vendor}"  # the vendor's jobs in an RQ queue or running
KEY_ACTIVE_WEBHOOKS = "imgproc:active-webhooks:{vendor}"  # the same for its webhook deliveries
#: Paused queues and vendors: name -> when (epoch seconds), written by ``imgproc.queueing.pauses``.
KEY_PAUSED_QUEUES = "imgproc:paused:queues"
KEY_PAUSED_VENDORS = "imgproc:paused:vendors"
# Left by earlier versions, taken over by the first feed: 0.1's ring (a list and a set), 0.2's
# ready set scored by (jobs active, turn) and its turn counter.
KEY_RING = "imgproc:ring:{queue}"
KEY_RING_SET = "imgproc:ring-set:{queue}"
KEY_READY_TURNS = "imgproc:ready:{queue}"
KEY_TURN = "imgproc:turn:{queue}"

# Shared by the scripts: KEYS and ARGV open with these (``FairShare._fixed``), then each script's own.
# A queue's keys come in a group of five (``FairShare._group``): ready, held, parked, idle, clock.
COMMON = """
local PAUSED_QUEUES, PAUSED_VENDORS, WEIGHTS, CAPS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local LANES, ACTIVES, JOBS, CAP = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local PLANS, VENDOR_PAUSES = ARGV[5] == '1', ARGV[6] == '1'
local FIXED_KEYS, FIXED_ARGS = 4, 6

local function num(x) return string.format('%.17g', x) end
local function group(i)
  return {ready=KEYS[i], held=KEYS[i + 1], parked=KEYS[i + 2], idle=KEYS[i + 3], clock=KEYS[i + 4]}
end
local function clock(q) return tonumber(redis.call('GET', q.clock) or '0') end
local function planned(hash, vendor, default)
  local value = PLANS and tonumber(redis.call('HGET', hash, vendor))
  if value and value >= 1 then return math.floor(value) end
  return default
end
local function paused(vendor)
  return VENDOR_PAUSES and redis.call('HEXISTS', PAUSED_VENDORS, vendor) == 1
end
local function listed(q, vendor)
  return redis.call('ZSCORE', q.ready, vendor) or redis.call('ZSCORE', q.held, vendor)
    or redis.call('ZSCORE', q.parked, vendor)
end
-- a vendor with waiting jobs and room, never behind the clock: a paused one waits apart
local function place(q, vendor, start)
  start = math.max(start, clock(q))
  redis.call('ZADD', paused(vendor) and q.parked or q.ready, num(start), vendor)
end
-- a vendor at its cap or paused no longer: back among the others
local function let_go(q, from, vendor)
  local start = redis.call('ZSCORE', from, vendor)
  if start then
    redis.call('ZREM', from, vendor)
    place(q, vendor, tonumber(start))
  end
end
-- a vendor whose lane was empty: at the clock, or at its own time if still ahead of it
local function arrive(q, vendor)
  if listed(q, vendor) then return end
  local ahead = tonumber(redis.call('ZSCORE', q.idle, vendor))
  redis.call('ZREM', q.idle, vendor)
  place(q, vendor, ahead or 0)
end
-- jobs whose end the fair share was not told of (a worker killed mid-job): dropped when seen
local ended = {finished=true, failed=true, canceled=true, stopped=true, scheduled=true}
local function count(vendor)
  local active = ACTIVES .. vendor
  for _, id in ipairs(redis.call('SMEMBERS', active)) do
    local status = redis.call('HGET', JOBS .. id, 'status')
    if not status or ended[status] then redis.call('SREM', active, id) end
  end
  return redis.call('SCARD', active)
end
"""

# KEYS: fixed, the queue's group, lane.  ARGV: fixed, vendor, job ids...
_ADMIT = (
    COMMON
    + """
redis.call('RPUSH', KEYS[FIXED_KEYS + 6], unpack(ARGV, FIXED_ARGS + 2))
arrive(group(FIXED_KEYS + 1), ARGV[FIXED_ARGS + 1])
return 1
"""
)

# KEYS: fixed, the queue's group, rq queue list, sweep cursor, old ring, old ring set, old ready, old turn.
# ARGV: fixed, queue name, room wanted, held vendors to re-count per call.
_FEED = (
    COMMON
    + """
local q = group(FIXED_KEYS + 1)
local rq, sweep = KEYS[FIXED_KEYS + 6], KEYS[FIXED_KEYS + 7]
local ring, ring_set, old_ready, old_turn = unpack(KEYS, FIXED_KEYS + 8, FIXED_KEYS + 11)
local name = ARGV[FIXED_ARGS + 1]
local room, per_call = tonumber(ARGV[FIXED_ARGS + 2]), tonumber(ARGV[FIXED_ARGS + 3])
if redis.call('HEXISTS', PAUSED_QUEUES, name) == 1 then return 0 end
room = room - redis.call('LLEN', rq)

-- lanes left by earlier versions join in their old order, at the clock
if redis.call('EXISTS', ring, old_ready) > 0 then
  for _, vendor in ipairs(redis.call('LRANGE', ring, 0, -1)) do arrive(q, vendor) end
  for _, vendor in ipairs(redis.call('ZRANGE', old_ready, 0, -1)) do arrive(q, vendor) end
  redis.call('DEL', ring, ring_set, old_ready, old_turn)
end

-- a few held vendors, taken in rotation, are re-counted on every call: a count left too high by
-- a lost job end (a worker killed mid-job) holds its vendor back for a while, not for ever
local at = tonumber(redis.call('GET', sweep) or '0')
local batch = redis.call('ZRANGE', q.held, at, at + per_call - 1, 'WITHSCORES')
local kept = 0
for i = 1, #batch, 2 do
  local vendor = batch[i]
  if count(vendor) < planned(CAPS, vendor, CAP) then
    redis.call('ZREM', q.held, vendor)
    place(q, vendor, tonumber(batch[i + 1]))
  else
    kept = kept + 1
  end
end
redis.call('SET', sweep, #batch > 0 and (at + kept) or 0)

local moved = 0
while room > 0 do
  local head = redis.call('ZRANGE', q.ready, 0, 0, 'WITHSCORES')
  if #head == 0 then break end
  local vendor, start = head[1], tonumber(head[2])
  if paused(vendor) then
    redis.call('ZREM', q.ready, vendor)
    redis.call('ZADD', q.parked, head[2], vendor)
  elseif count(vendor) >= planned(CAPS, vendor, CAP) then
    redis.call('ZREM', q.ready, vendor)
    redis.call('ZADD', q.held, head[2], vendor)
  else
    local lane = LANES .. vendor
    -- a job cancelled (or expired) while it waited is dropped here
    local id = redis.call('LPOP', lane)
    while id and redis.call('HGET', JOBS .. id, 'status') ~= 'queued' do id = redis.call('LPOP', lane) end
    local finish = start
    if id then
      redis.call('RPUSH', rq, id)
      redis.call('SADD', ACTIVES .. vendor, id)
      redis.call('SET', q.clock, head[2])
      finish = start + 1 / planned(WEIGHTS, vendor, 1)
      moved, room = moved + 1, room - 1
    end
    if redis.call('LLEN', lane) > 0 then
      redis.call('ZADD', q.ready, num(finish), vendor)
    else
      redis.call('ZREM', q.ready, vendor)
      if id then redis.call('ZADD', q.idle, num(finish), vendor) end
    end
  end
end
if moved > 0 then redis.call('ZREMRANGEBYSCORE', q.idle, '-inf', redis.call('GET', q.clock)) end
return moved
"""
)

# KEYS: fixed, active set, a group per queue counted in it.  ARGV: fixed, vendor, job id.
_RELEASE = (
    COMMON
    + """
local vendor, id = ARGV[FIXED_ARGS + 1], ARGV[FIXED_ARGS + 2]
local active = KEYS[FIXED_KEYS + 1]
if redis.call('SREM', active, id) == 0 then return 0 end
if redis.call('SCARD', active) < planned(CAPS, vendor, CAP) then
  for i = FIXED_KEYS + 2, #KEYS, 5 do
    local q = group(i)
    let_go(q, q.held, vendor)
  end
end
return 1
"""
)

# KEYS: lane, ready, held, parked.  ARGV: vendor, job id.
_WITHDRAW = """
local removed = redis.call('LREM', KEYS[1], 0, ARGV[2])
if removed > 0 and redis.call('LLEN', KEYS[1]) == 0 then
  for i = 2, 4 do redis.call('ZREM', KEYS[i], ARGV[1]) end
end
return removed
"""


class FairShare:
    """Per-vendor lanes and the feed into the RQ queues: by weighted virtual time, within each cap."""

    #: Held vendors re-counted on each feed (see ``_FEED``); the rest of its work does not grow with vendors.
    SWEEP = 2

    def __init__(
        self,
        conn: redis.Redis,
        cap: int,
        room: int = 2,
        active: str = KEY_ACTIVE,
        queues: tuple[str, ...] = QUEUES,
        plans: bool = True,
    ):
        self.conn = conn
        self.cap = cap
        #: Where each vendor's jobs in progress are counted (image jobs: across all image queues).
        self.active = active
        #: The queues whose jobs ``active`` counts: a job's end lets its vendor go on in each of them.
        self.queues = queues
        #: Whether the vendors' plans (weight, cap) and pauses apply; webhook deliveries: neither.
        self.plans = plans
        #: Jobs kept ready in each RQ queue: enough that a free worker never waits on a feed,
        #: few enough that a newcomer's job is near the front.
        self.room = room
        self._feed = conn.register_script(_FEED)
        self._release = conn.register_script(_RELEASE)
        self._withdraw = conn.register_script(_WITHDRAW)

    def fixed(self, queue: str, jobs: str = Job.redis_job_namespace_prefix) -> tuple[list[str], list]:
        """The KEYS and ARGV every script opens with (``COMMON``), for the lanes of ``queue``."""
        keys = [KEY_PAUSED_QUEUES, KEY_PAUSED_VENDORS, KEY_PLAN_WEIGHT, KEY_PLAN_CAP]
        flag = "1" if self.plans else "0"
        lanes, actives = KEY_LANE.format(queue=queue, vendor=""), self.active.format(vendor="")
        return keys, [lanes, actives, jobs, self.cap, flag, flag]

    def group(self, queue: str) -> list[str]:
        """A queue's five keys as ``COMMON`` reads them: ready, held, parked, idle, clock."""
        return [key.format(queue=queue) for key in (KEY_READY, KEY_HELD, KEY_PARKED, KEY_IDLE, KEY_CLOCK)]

    def admit(self, pipe, queue: str, vendor: str, job_ids: list[str]) -> None:
        """Put new jobs at the end of the vendor's lane, in the caller's transaction.

        EVAL with the script's text rather than redis-py's Script: in a pipeline,
        a Script costs a SCRIPT EXISTS round trip before every transaction, and
        an EVALSHA that Redis no longer knows (after a restart) would fail inside
        the transaction while the job hashes beside it are written.
        """
        keys, args = self.fixed(queue)
        keys += [*self.group(queue), KEY_LANE.format(queue=queue, vendor=vendor)]
        pipe.eval(_ADMIT, len(keys), *keys, *args, vendor, *job_ids)

    def feed(self, queue: Queue, pipe=None) -> int | None:
        """Move waiting jobs into the RQ queue within each vendor's cap, lowest virtual time first.

        With ``pipe``, the feed is queued in the caller's transaction (as EVAL, see
        ``admit``) and nothing is returned; else it runs now and returns how many moved.
        """
        name = queue.name
        keys, args = self.fixed(name, queue.job_class.redis_job_namespace_prefix)
        keys += [
            *self.group(name),
            queue.key,
            KEY_SWEEP.format(queue=name),
            *(key.format(queue=name) for key in (KEY_RING, KEY_RING_SET, KEY_READY_TURNS, KEY_TURN)),
        ]
        args += [name, self.room, self.SWEEP]
        if pipe is not None:
            pipe.eval(_FEED, len(keys), *keys, *args)
            return None
        return int(self._feed(keys=keys, args=args))

    def release(self, queue: str, vendor: str, job_id: str, pipe=None) -> bool | None:
        """A job of ``vendor`` has left the RQ queue for good (ended, or scheduled for a retry).

        With ``pipe``, queued in the caller's transaction (as EVAL, see ``admit``); else run now.
        """
        keys, args = self.fixed(queue)
        keys.append(self.active.format(vendor=vendor))
        for name in self.queues if queue in self.queues else (queue,):
            keys += self.group(name)
        args += [vendor, job_id]
        if pipe is not None:
            pipe.eval(_RELEASE, len(keys), *keys, *args)
            return None
        return bool(self._release(keys=keys, args=args))

    def withdraw(self, queue: str, vendor: str, job_id: str) -> bool:
        """Take a cancelled job out of its vendor's lane, so that it no longer counts as waiting."""
        keys = [KEY_LANE.format(queue=queue, vendor=vendor), *self.group(queue)[:3]]
        return bool(self._withdraw(keys=keys, args=[vendor, job_id]))

    def vendors(self, queue: str) -> list[str]:
        """The vendors with jobs in the lanes of ``queue``: ready, at their cap or paused."""
        with self.conn.pipeline(transaction=False) as pipe:
            for key in self.group(queue)[:3]:
                pipe.zrange(key, 0, -1)
            return sorted({v.decode() for found in pipe.execute() for v in found})

    def waiting(self, queue: str) -> int:
        """Jobs still in the lanes of ``queue``."""
        vendors = self.vendors(queue)
        with self.conn.pipeline(transaction=False) as pipe:
            for vendor in vendors:
                pipe.llen(KEY_LANE.format(queue=queue, vendor=vendor))
            return sum(pipe.execute())


def forget(pipe, queue: str, vendor: str) -> None:
    """Drop a vendor's lane of ``queue`` and its place in every set of it, on ``pipe`` (a purge)."""
    pipe.delete(KEY_LANE.format(queue=queue, vendor=vendor))
    for key in (KEY_READY, KEY_HELD, KEY_PARKED, KEY_IDLE):
        pipe.zrem(key.format(queue=queue), vendor)
    pipe.hdel(KEY_PAUSED_VENDORS, vendor)


def for_queue(conn: redis.Redis, settings: Settings, queue: str) -> FairShare:
    """The fair share in front of ``queue``: webhook deliveries are counted and capped apart from jobs."""
    if queue == QUEUE_WEBHOOKS:
        return FairShare(
            conn,
            settings.webhook_vendor_concurrency,
            active=KEY_ACTIVE_WEBHOOKS,
            queues=(QUEUE_WEBHOOKS,),
            plans=False,
        )
    return FairShare(conn, settings.vendor_concurrency)
