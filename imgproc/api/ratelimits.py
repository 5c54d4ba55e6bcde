"""Per-vendor request limits, counted in Redis so every API process shares them: one round trip a request.

The vendor comes from the API key (``g.vendor``, set by the authentication
hook that runs before this one), never from a header a client chooses. If
Redis is down the check raises and the API answers 503: requests are never
let through unlimited.

Each vendor's limits are its plan's (``imgproc.adapters.plans``: its overrides
over its plan over the environment's), as published in Redis and read through
a ``PlanFeed`` that sees a change within a second; the same hook refuses a
disabled vendor's requests (403 ``vendor_disabled``) and leaves the vendor's
``Effective`` values in ``g.plan`` for the views (a bulk's ``max_items``).

Not flask-limiter (used up to 0.1.0), because of what it cost: it checks
each of a request's limits in a Redis round trip of its own, a limit that
counts only accepted requests twice (a test before the view, a hit after)
and the headers once more: 4 Lua calls and half of an enqueue's CPU.
Measured with the enqueue phase of ``make bench`` (gunicorn -w 4, wrk, 50
clients, 2 cores): 540-660 enqueues/s with flask-limiter, 1,340 with the
limits switched off, 840-1,080 with this module (README, Performance). The
``limits`` library, which flask-limiter is built on, still reads the strings.

Moving window, counted exactly: a sorted set per (limit, vendor) holds one
member per unit used, scored by the millisecond it was used. A limit that
counts accepted requests only is reserved by the check and given back by
``release`` when the answer is a refusal (400, 413, 429...), so the common
path is one round trip, and concurrent requests can never overshoot a limit
(flask-limiter's test-then-hit could).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, g, request
from limits import RateLimitItem, parse
from rq.exceptions import NoSuchJobError
from rq.job import Job
from werkzeug.exceptions import HTTPException

from imgproc.adapters.plans import Effective, Plans
from imgproc.config import Settings
from imgproc.errors import ImgprocError, RateLimited, VendorDisabled
from imgproc.jobtypes import JOB_TYPES, MATTING, JobType, Payload
from imgproc.queueing import planfeed, usage
from imgproc.queueing.keys import KEY_LIMIT

from .options import validate
from .requests import request_fields

log = logging.getLogger(__name__)

#: Each limit: its scope (in keys, messages, metrics and ``GET /limits``) and the setting that holds it.
SCOPES = (
    ("global", "limit_global"),
    ("image", "limit_image"),
    ("bulk", "limit_bulk"),
    ("bg-removal", "limit_bg_removal"),
    ("session-reads", "limit_session_reads"),
)
#: The limits a plan sets, by scope: their names in a plan (``imgproc.adapters.plans.LIMITS``).
PLAN_SCOPES = {"global": "all", "image": "image", "bulk": "bulk", "bg-removal": "bg_removal"}
#: A zip of a batch's results is a download, counted as any client's, from a signed-in page too.
DOWNLOADS = {"listings.batch_zip"}
#: The enqueue views (imgproc.api.routes), by Flask's endpoint name; the job type is in their arguments.
SINGLE_VIEW, BULK_VIEW = "api.enqueue_single", "api.enqueue_bulk"
ENQUEUE_VIEWS = {SINGLE_VIEW, BULK_VIEW}

# KEYS: one sorted set per limit. ARGV: now (ms), the request's token, then per limit its amount,
# window (ms), cost and whether it is counted on its own (1: the all-requests limit, kept even when a
# later limit refuses) or only with the others (0). Returns {refused limit or 0, index of the limit for
# the headers, its remaining, its reset (ms), retry after (ms)}.
_CHECK = """
local now, token = tonumber(ARGV[1]), ARGV[2]
local used, amount, window, cost, alone = {}, {}, {}, {}, {}
local function add(i)
  local members = {}
  for j = 1, cost[i] do
    members[#members + 1] = now
    members[#members + 1] = token .. ':' .. j
    if #members >= 1000 or j == cost[i] then
      redis.call('ZADD', KEYS[i], unpack(members))
      members = {}
    end
  end
  redis.call('PEXPIRE', KEYS[i], window[i])
  used[i] = used[i] + cost[i]
end
local function refuse(i)
  -- The moment enough units have left the window for this cost to fit.
  local over = used[i] + cost[i] - amount[i]
  local retry = window[i]
  if cost[i] <= amount[i] then
    local entry = redis.call('ZRANGE', KEYS[i], over - 1, over - 1, 'WITHSCORES')
    retry = tonumber(entry[2]) + window[i] - now
  end
  local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  local reset = oldest[2] and tonumber(oldest[2]) + window[i] or now + window[i]
  return {i, i, math.max(0, amount[i] - used[i]), reset, math.max(1, retry)}
end
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 4
  amount[i], window[i], cost[i] = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
  alone[i] = ARGV[at + 4] == '1'
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window[i])
  used[i] = redis.call('ZCARD', KEYS[i])
  if used[i] + cost[i] > amount[i] then return refuse(i) end
  if alone[i] then add(i) end
end
for i = 1, #KEYS do
  if not alone[i] then add(i) end
end
local best = 1
for i = 2, #KEYS do
  if amount[i] - used[i] < amount[best] - used[best] then best = i end
end
local oldest = redis.call('ZRANGE', KEYS[best], 0, 0, 'WITHSCORES')
return {0, best, amount[best] - used[best], tonumber(oldest[2]) + window[best], 0}
"""


@dataclass(frozen=True)
class Use:
    """One limit a request uses: ``cost`` units of ``item``; ``alone`` counts even when another refuses."""

    scope: str
    item: RateLimitItem
    cost: int = 1
    alone: bool = False


@dataclass(frozen=True)
class Verdict:
    """What the check found: the limit shown in the headers, and the one that refused (if any)."""

    shown: Use
    remaining: int
    reset: float
    refused: Use | None = None
    retry_after: float = 0


class RequestLimits:
    """Each vendor's limits (its plan's, else ``settings``'), checked for every ``/api/`` request."""

    def __init__(self, conn: redis.Redis, settings: Settings):
        self.conn = conn
        self.settings = settings
        #: The default plan's limits, and the signed-in page's reads (no plan sets those).
        self.items = {scope: parse(getattr(settings, name)) for scope, name in SCOPES}
        self.plans = planfeed.PlanFeed(conn, republish=self._republish)
        self._parsed: dict[str, RateLimitItem] = {}
        self._check = conn.register_script(_CHECK)

    def effective(self, vendor: str) -> Effective:
        """The vendor's plan values in force in this process (read again within a second of a change)."""
        return Effective.of(self.settings, self.plans.of(vendor))

    def items_for(self, plan: Effective) -> dict[str, RateLimitItem]:
        """The limits of a vendor on ``plan``, by scope."""
        own = {scope: self._parse(plan.terms.limits[name]) for scope, name in PLAN_SCOPES.items()}
        return {**self.items, **own}

    def _parse(self, text: str) -> RateLimitItem:
        item = self._parsed.get(text)
        if item is None:
            if len(self._parsed) > 10_000:  # one entry per distinct string of the plans: few
                self._parsed.clear()
            item = self._parsed[text] = parse(text)
        return item

    def _republish(self) -> None:
        """Redis holds no plans (flushed, restored, never written): write them from the database."""
        from .services import services  # at call time: services imports the app's other parts

        planfeed.publish(self.conn, Plans(services().engine).published())

    def init_app(self, app: Flask) -> None:
        """Check before each request (after authentication) and add the headers to each answer."""
        app.before_request(self._before)
        app.after_request(self._after)

    def uses(self, items: dict[str, RateLimitItem] | None = None) -> list[Use]:
        """The limits the current request uses (none: not counted), of ``items`` (the default plan's)."""
        items = items or self.items
        if not request.path.startswith("/api/"):
            return []
        # A signed-in page's reads (its lists, event streams) do not use up the vendor's requests: they
        # count under a generous limit of their own, so that a script with the cookie is not unlimited.
        if g.get("via_session") and request.method in ("GET", "HEAD") and request.endpoint not in DOWNLOADS:
            return [Use("session-reads", items["session-reads"], alone=True)]
        found = [Use("global", items["global"], alone=True)]
        if request.endpoint == "listings.retry_job":  # a retry runs its job again: the enqueue it is
            found.append(Use("image", items["image"]))
            if self._retry_runs_matting(request.view_args["job_id"]):
                found.append(Use("bg-removal", items["bg-removal"]))
            return found
        if request.endpoint not in ENQUEUE_VIEWS:
            return found
        found.append(Use("image", items["image"]))
        bulk = request.endpoint == BULK_VIEW
        if bulk:
            found.append(Use("bulk", items["bulk"]))
        job_type = JOB_TYPES[request.view_args["job_type"]]
        max_items = g.plan.terms.max_items if "plan" in g else self.settings.max_bulk_items
        cost = _matting_cost(job_type, bulk, self.settings, max_items) if MATTING in job_type.models else 0
        if cost:
            found.append(Use("bg-removal", items["bg-removal"], cost))
        return found

    def _retry_runs_matting(self, job_id: str) -> bool:
        """Whether the vendor's failed job that a retry puts back runs the model (its stored options)."""
        try:
            job = Job.fetch(job_id, connection=self.conn)
        except (NoSuchJobError, ValueError):  # the view answers 404, which costs nothing
            return False
        payload = Payload.of(job)
        if payload is None or (payload.vendor != g.vendor.name and not g.vendor.operator):
            return False  # another vendor's job is a 404: its options must not show in the headers
        try:
            return bool(payload.job_type.runs_matting(payload.options or {}))
        except (KeyError, TypeError):  # options stored before the option existed
            return False

    def check(self, vendor: str, uses: list[Use], token: str) -> Verdict:
        """Count ``uses`` for ``vendor`` in one round trip, or find the first limit that refuses."""
        args: list = [int(time.time() * 1000), token]
        for use in uses:
            args += [use.item.amount, use.item.get_expiry() * 1000, use.cost, int(use.alone)]
        keys = [KEY_LIMIT.format(use.scope, vendor) for use in uses]
        refused, shown, remaining, reset_ms, retry_ms = self._check(keys=keys, args=args)
        return Verdict(
            uses[shown - 1],
            remaining,
            reset_ms / 1000,
            uses[refused - 1] if refused else None,
            retry_ms / 1000,
        )

    def release(self, vendor: str, uses: list[Use], token: str) -> None:
        """Give back what a refused answer reserved: its enqueue limits count accepted requests only."""
        with self.conn.pipeline(transaction=False) as pipe:
            for use in uses:
                if not use.alone:
                    pipe.zrem(
                        KEY_LIMIT.format(use.scope, vendor), *(f"{token}:{j}" for j in range(1, use.cost + 1))
                    )
            pipe.execute()

    def stats(self, vendor: str) -> dict[str, dict]:
        """Each of the vendor's limits: its amount, what is left and when its oldest use leaves the window."""
        now = time.time()
        items = self.items_for(self.effective(vendor))
        with self.conn.pipeline(transaction=False) as pipe:
            for scope, item in items.items():
                key = KEY_LIMIT.format(scope, vendor)
                pipe.zremrangebyscore(key, "-inf", (now - item.get_expiry()) * 1000)
                pipe.zcard(key)
                pipe.zrange(key, 0, 0, withscores=True)
            answers = pipe.execute()
        found = {}
        for (scope, item), at in zip(items.items(), range(0, len(answers), 3), strict=True):
            used, oldest = answers[at + 1], answers[at + 2]
            reset = oldest[0][1] / 1000 + item.get_expiry() if oldest else now
            found[scope] = {
                "limit": str(item),
                "amount": item.amount,
                "remaining": max(0, item.amount - used),
                "reset_in": max(0, round(reset - now)),
            }
        return found

    def _before(self) -> None:
        if not request.path.startswith("/api/"):
            return
        g.plan = plan = self.effective(g.vendor.name)
        # The published flag, not the key cache's copy (``CachedVendors``, 5 s): enabling is seen as soon.
        if plan.disabled:
            raise VendorDisabled(f"vendor {g.vendor.name!r} is disabled; an operator can enable it again")
        uses = self.uses(self.items_for(plan))
        if not uses:
            return
        vendor, token = g.vendor.name, uuid.uuid4().hex
        verdict = self.check(vendor, uses, token)
        g.limits = (verdict, uses, token)
        if verdict.refused is not None:
            from .services import services  # at call time: services imports the app's other parts

            services().metrics.inc("imgproc_rate_limited_total", limit=verdict.refused.scope)
            usage.add_now(self.conn, vendor, limited=1)  # the operator's page shows each vendor's refusals
            raise RateLimited(f"{verdict.refused.scope} limit of {verdict.refused.item} reached")

    def _after(self, response: Response) -> Response:
        counted = g.get("limits")
        if counted is None:
            return response
        verdict, uses, token = counted
        if response.status_code >= 400 and verdict.refused is None:
            try:
                self.release(g.vendor.name, uses, token)
            except redis.RedisError as exc:  # the answer is given already; the units expire with the window
                log.warning("could not give back the limits of a refused request: %s", exc)
        response.headers["X-RateLimit-Limit"] = str(verdict.shown.item.amount)
        response.headers["X-RateLimit-Remaining"] = str(max(0, verdict.remaining))
        response.headers["X-RateLimit-Reset"] = str(int(verdict.reset) + 1)
        if verdict.refused is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after)))
        return response


def _matting_cost(job_type: JobType, bulk: bool, settings: Settings, max_items: int) -> int:
    """How many of the request's jobs run the background-removal model: each costs one of its limit.

    Counted from the options each job will run with (a bulk item's own over the
    bulk's defaults, a preset's ``remove_background``), so no endpoint runs the
    model outside the limit. What the view will refuse costs nothing: its 400,
    or 413 for a bulk over the plan's ``max_items``, says more than a 429 would.
    """
    try:
        fields, _ = request_fields()
    except (ImgprocError, HTTPException):  # not JSON, a bad form, a body over max_request_bytes
        return 0
    given = [fields.get("options") or {}]
    if bulk:
        items, defaults = fields.get("items"), fields.get("options") or {}
        if not isinstance(items, list) or len(items) > max_items:
            return 0
        given = [_item_options(defaults, item) for item in items]
    return sum(_runs_matting(job_type, options, settings) for options in given)


def _item_options(defaults: Any, item: Any) -> dict | None:
    """A bulk item's options as the view merges them; None where the view refuses the item."""
    own = item.get("options") or {} if isinstance(item, dict) else None
    return {**defaults, **own} if isinstance(own, dict) and isinstance(defaults, dict) else None


def _runs_matting(job_type: JobType, options: Any, settings: Settings) -> bool:
    if not isinstance(options, dict):
        return False
    try:
        return job_type.runs_matting(validate(job_type, options, settings))
    except ImgprocError:
        return False
