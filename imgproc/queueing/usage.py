"""Per-vendor usage by UTC day: jobs enqueued, megapixels processed, requests refused by a rate limit.

One Redis hash per day (``vendor|figure`` -> amount) for the operator's page.
Prometheus' metrics carry no vendor label on purpose (bounded series), so
these few figures per vendor are kept here instead, for ``KEEP_DAYS``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import redis

KEY_USAGE = "imgproc:usage:{}"
KEEP_DAYS = 35
FIGURES = ("jobs", "megapixels", "limited")


def _day(when: dt.datetime | None = None) -> str:
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d")


def add(pipe: redis.Redis | redis.client.Pipeline, vendor: str, **amounts: float) -> None:
    """Add ``jobs=``, ``megapixels=`` or ``limited=`` to the vendor's figures of today."""
    key = KEY_USAGE.format(_day())
    for figure, amount in amounts.items():
        if figure not in FIGURES:
            raise ValueError(f"unknown usage figure {figure!r}")
        pipe.hincrbyfloat(key, f"{vendor}|{figure}", amount)
    pipe.expire(key, KEEP_DAYS * 86400)


def add_now(conn: redis.Redis, vendor: str, **amounts: float) -> None:
    """``add`` in one round trip of its own."""
    with conn.pipeline(transaction=False) as pipe:
        add(pipe, vendor, **amounts)
        pipe.execute()


def days(conn: redis.Redis, count: int = 7) -> list[dict[str, Any]]:
    """The last ``count`` days, newest first: ``{"day", "vendors": {vendor: {figure: amount}}}``."""
    today = dt.datetime.now(dt.UTC)
    names = [_day(today - dt.timedelta(days=i)) for i in range(count)]
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(KEY_USAGE.format(name))
        stored = pipe.execute()
    found = []
    for name, fields in zip(names, stored, strict=True):
        vendors: dict[str, dict[str, float]] = {}
        for field, value in fields.items():
            vendor, _, figure = field.decode().rpartition("|")
            vendors.setdefault(vendor, dict.fromkeys(FIGURES, 0))[figure] = round(float(value), 3)
        for figures in vendors.values():
            figures["jobs"], figures["limited"] = int(figures["jobs"]), int(figures["limited"])
        found.append({"day": name, "vendors": dict(sorted(vendors.items()))})
    return found
