"""Each vendor's plan values in Redis, for every API process and worker: a change is seen within 5 s.

Whoever changes a plan, a vendor's plan, overrides or disabled flag (the API's
operator routes, ``imgproc plans``/``vendors set``) writes the database, then
``publish``es what ``imgproc.adapters.plans.Plans.published`` reads from it:

    KEY_PLAN_VENDORS  {vendor: JSON of what its plan and overrides set}   read by the API (``PlanFeed``)
    KEY_PLAN_WEIGHT   {vendor: weight}, only where set                    read by the fair share's Lua
    KEY_PLAN_CAP      {vendor: max_running}, only where set               read by the fair share's Lua
    KEY_PLAN_VERSION  bumped by every publish

The three hashes are replaced whole in one MULTI, so a reader never sees half
of a change. The workers' Lua reads the hashes at each feed; an API process
reads a vendor's entry once and keeps it until the version moves, which it
checks at most every ``refresh`` seconds (one GET a second a process).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from .keys import KEY_PLAN_CAP, KEY_PLAN_VENDORS, KEY_PLAN_VERSION, KEY_PLAN_WEIGHT

log = logging.getLogger(__name__)

#: Seconds an API process trusts the version it read last.
REFRESH = 1.0


def publish(conn: redis.Redis, published: Mapping[str, Mapping[str, Any]]) -> int:
    """Replace every vendor's published values with ``published`` ({vendor: values}); the new version."""
    weights = {v: int(p["weight"]) for v, p in published.items() if p.get("weight") is not None}
    caps = {v: int(p["max_running"]) for v, p in published.items() if p.get("max_running") is not None}
    with conn.pipeline(transaction=True) as pipe:
        pipe.delete(KEY_PLAN_VENDORS, KEY_PLAN_WEIGHT, KEY_PLAN_CAP)
        if published:
            pipe.hset(
                KEY_PLAN_VENDORS, mapping={v: json.dumps(p, sort_keys=True) for v, p in published.items()}
            )
        if weights:
            pipe.hset(KEY_PLAN_WEIGHT, mapping=weights)
        if caps:
            pipe.hset(KEY_PLAN_CAP, mapping=caps)
        pipe.incr(KEY_PLAN_VERSION)
        return int(pipe.execute()[-1])


class PlanFeed:
    """A vendor's published values as one process reads them: ``of(vendor)``, {} for the default plan.

    Each entry is kept with the version it was read at and used while that is the
    version: read in one MULTI with its entry, so a thread that read before a
    change can never keep the old values after it. When Redis holds no version at
    all (never published, or flushed), ``republish`` is called to write it again
    from the database, at most once a ``refresh``.
    """

    MAX_ENTRIES = 100_000

    def __init__(
        self,
        conn: redis.Redis,
        refresh: float = REFRESH,
        republish: Callable[[], object] | None = None,
    ):
        self.conn = conn
        self.refresh = refresh
        self.republish = republish
        self._version: int | None = None
        self._checked = float("-inf")
        self._seen: dict[str, tuple[int | None, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def version(self) -> int | None:
        """The version this process goes by, read again when ``refresh`` has passed."""
        now = time.monotonic()
        if now - self._checked >= self.refresh:
            raw = self.conn.get(KEY_PLAN_VERSION)
            if raw is None and self.republish is not None:
                self.republish()
                raw = self.conn.get(KEY_PLAN_VERSION)
            with self._lock:
                self._version, self._checked = (None if raw is None else int(raw)), now
        return self._version

    def moved(self, version: int) -> None:
        """This process published ``version`` itself: its own next requests follow at once."""
        with self._lock:
            self._version, self._checked = version, time.monotonic()

    def of(self, vendor: str) -> dict[str, Any]:
        """What the vendor's plan and overrides set (``Plans.published``'s entry), {} when nothing."""
        version = self.version()
        hit = self._seen.get(vendor)
        if hit is not None and hit[0] == version:
            return hit[1]
        raw_version, raw = self._read(vendor)
        if raw_version is None and self.republish is not None:  # Redis lost them since the last check
            self.republish()
            raw_version, raw = self._read(vendor)
        read_at = None if raw_version is None else int(raw_version)
        values = _values(vendor, raw)
        with self._lock:
            if len(self._seen) >= self.MAX_ENTRIES:
                self._seen.clear()
            self._seen[vendor] = (read_at, values)
            if read_at is not None and (self._version is None or read_at > self._version):
                self._version = read_at  # newer than the last check: no need to wait for the next
        return values

    def _read(self, vendor: str) -> tuple[bytes | None, bytes | None]:
        """The version and the vendor's entry, read together."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.get(KEY_PLAN_VERSION)
            pipe.hget(KEY_PLAN_VENDORS, vendor)
            return tuple(pipe.execute())


def _values(vendor: str, raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        values = json.loads(raw)
    except ValueError:  # written by hand: the default plan rather than a 500 on every request
        log.warning("the plan values of vendor %s in Redis are not JSON; the default plan applies", vendor)
        return {}
    return values if isinstance(values, dict) else {}
