"""Fair share of the workers between vendors: per-vendor lanes in front of each RQ queue.

A new job waits in its vendor's lane (a Redis list) instead of the RQ queue.
``feed`` moves jobs from the lanes into the RQ queue one at a time, each
time from the vendor with the fewest jobs in the queue or running (ties go to
the vendor that waited longest for its turn), never past a vendor's ``cap``.
So a vendor's 500-image bulk does not starve another vendor's single job: the
single job is taken at the next turn.

Why not rq's own tools: rq 2.x has no per-key concurrency limit (the
``RateLimit`` of rq 3 is not released), and a cap alone would not help when
there are no more workers than the cap; the order in which jobs reach the
workers has to change, which rq leaves to the queue list. The lanes keep rq's
queues, registries, retries and job hashes as they are.

Both steps are Lua scripts, atomic across API processes and workers.
``feed`` runs after every enqueue and before every dequeue of a worker.
"""

from __future__ import annotations

import redis
from rq import Queue

KEY_LANE = "imgproc:lane:{queue}:{vendor}"
KEY_RING = "imgproc:ring:{queue}"  # vendors with waiting jobs, in turn order
KEY_RING_SET = "imgproc:ring-set:{queue}"  # the same vendors, for membership
KEY_ACTIVE = "imgproc:active:{vendor}"  # the vendor's jobs in an RQ queue or running

_ADMIT = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
if redis.call('SADD', KEYS[3], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
return 1
"""

# KEYS: rq queue list, ring, ring set.  ARGV: cap, room wanted, lane prefix, active prefix, rq job prefix.
_FEED = """
local cap, room = tonumber(ARGV[1]), tonumber(ARGV[2]) - redis.call('LLEN', KEYS[1])
local ended = {finished=true, failed=true, canceled=true, stopped=true, scheduled=true}
local moved = 0
while room > 0 do
  -- the vendor with the fewest jobs in the queue or running goes next; ties by turn order
  local best, fewest = nil, cap
  for _, vendor in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    local active = ARGV[4] .. vendor
    for _, id in ipairs(redis.call('SMEMBERS', active)) do
      local status = redis.call('HGET', ARGV[5] .. id, 'status')
      if not status or ended[status] then redis.call('SREM', active, id) end
    end
    local count = redis.call('SCARD', active)
    if count < fewest then best, fewest = vendor, count end
  end
  if not best then break end
  local lane = ARGV[3] .. best
  repeat
    local id = redis.call('LPOP', lane)
    -- a job cancelled (or expired) while it waited is dropped here
    if id and redis.call('HGET', ARGV[5] .. id, 'status') == 'queued' then
      redis.call('RPUSH', KEYS[1], id)
      redis.call('SADD', ARGV[4] .. best, id)
      moved, room = moved + 1, room - 1
      break
    end
  until not id
  redis.call('LREM', KEYS[2], 1, best)
  if redis.call('LLEN', lane) > 0 then
    redis.call('RPUSH', KEYS[2], best)
  else
    redis.call('SREM', KEYS[3], best)
  end
end
return moved
"""


# KEYS: lane, ring, ring set.  ARGV: vendor, job id.
_WITHDRAW = """
local removed = redis.call('LREM', KEYS[1], 0, ARGV[2])
if removed > 0 and redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[1])
end
return removed
"""


class FairShare:
    """Per-vendor lanes and the round-robin feed into the RQ queues."""

    def __init__(self, conn: redis.Redis, cap: int, room: int = 2):
        self.conn = conn
        self.cap = cap
        #: Jobs kept ready in each RQ queue: enough that a free worker never waits on a feed,
        #: few enough that a newcomer's job is near the front.
        self.room = room
        self._feed = conn.register_script(_FEED)
        self._withdraw = conn.register_script(_WITHDRAW)

    @staticmethod
    def admit(pipe, queue: str, vendor: str, job_ids: list[str]) -> None:
        """Put new jobs at the end of the vendor's lane, in the caller's transaction.

        EVAL with the script's text rather than redis-py's Script: in a pipeline,
        a Script costs a SCRIPT EXISTS round trip before every transaction, and
        an EVALSHA that Redis no longer knows (after a restart) would fail inside
        the transaction while the job hashes beside it are written.
        """
        pipe.eval(
            _ADMIT,
            3,
            KEY_LANE.format(queue=queue, vendor=vendor),
            KEY_RING.format(queue=queue),
            KEY_RING_SET.format(queue=queue),
            vendor,
            *job_ids,
        )

    def feed(self, queue: Queue, pipe=None) -> int | None:
        """Move waiting jobs into the RQ queue, vendors in turn, within each vendor's cap.

        With ``pipe``, the feed is queued in the caller's transaction (as EVAL, see
        ``admit``) and nothing is returned; else it runs now and returns how many moved.
        """
        keys = [queue.key, KEY_RING.format(queue=queue.name), KEY_RING_SET.format(queue=queue.name)]
        args = [
            self.cap,
            self.room,
            KEY_LANE.format(queue=queue.name, vendor=""),
            KEY_ACTIVE.format(vendor=""),
            queue.job_class.redis_job_namespace_prefix,
        ]
        if pipe is not None:
            pipe.eval(_FEED, len(keys), *keys, *args)
            return None
        return int(self._feed(keys=keys, args=args))

    def withdraw(self, queue: str, vendor: str, job_id: str) -> bool:
        """Take a cancelled job out of its vendor's lane, so that it no longer counts as waiting."""
        keys = [
            KEY_LANE.format(queue=queue, vendor=vendor),
            KEY_RING.format(queue=queue),
            KEY_RING_SET.format(queue=queue),
        ]
        return bool(self._withdraw(keys=keys, args=[vendor, job_id]))

    def waiting(self, queue: str) -> int:
        """Jobs still in the lanes of ``queue``."""
        vendors = [v.decode() for v in self.conn.smembers(KEY_RING_SET.format(queue=queue))]
        with self.conn.pipeline(transaction=False) as pipe:
            for vendor in vendors:
                pipe.llen(KEY_LANE.format(queue=queue, vendor=vendor))
            return sum(pipe.execute())
