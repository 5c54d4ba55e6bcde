"""Live events (API.md "Events"): a job's or a batch's status as Server-Sent Events.

A stream opens with a comment line and the current status, then follows the
job's event stream in Redis (``imgproc.queueing.events``) until the job (or
every job of the batch) has ended, its last event the final status. A client
that reconnects with ``Last-Event-ID`` continues after that event. Each open
stream holds one request thread (gunicorn's ``gthread`` workers, see
``gunicorn.conf.py``) and waits on the process's event reader
(``imgproc.queueing.eventreader``: one Redis connection for all its streams),
never on the CPU; a vendor has at most ``max_streams_per_vendor`` open
(``imgproc.queueing.openstreams``).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from flask import Blueprint, Response, g, request, stream_with_context

from imgproc.errors import NotFound, TooManyStreams
from imgproc.queueing import events
from imgproc.queueing.keys import DONE
from imgproc.queueing.openstreams import Lease
from imgproc.queueing.views import with_base

from .services import result_base, services

#: Seconds between keep-alive comments (API.md: about every 15 s).
KEEP_ALIVE = 15.0
#: Longest wait for new events (give or take a fifth, so that streams opened together do not look
#: together); also how often the stream looks at the job itself, in case it ended without an event (its
#: worker was killed, or it expired). 2,000 open streams then read 130 jobs a second; every 5 s, 400 a
#: second doubled the p50 of the process's other requests.
BLOCK_MS = 15000

DONE_STATES = {s.value for s in DONE}
log = logging.getLogger("imgproc.api")
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _event(event_id: str, kind: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _follow(
    key: str,
    current: Callable[[], dict[str, Any]],
    ended: Callable[[dict[str, Any]], bool],
    kind: str | None,
    base: str = "",
) -> Iterator[str]:
    """The events of one stream: the current status first unless resuming, until ``ended``.

    ``kind`` None: each stream entry holds the status (a job), its result URL made absolute on
    ``base``; else each entry only marks a change and the status is read afresh as one ``kind``
    event (a batch).
    """
    svc = services()
    resume = events.valid_id(request.headers.get("Last-Event-ID"))
    yield ": keep-alive\n\n"
    entries = None
    if resume is None:
        # The newest id first, so that a client reconnecting with it misses nothing after this status.
        cursor = events.last_id(svc.conn, key)
        last = current()
        yield _event(cursor, kind or events.STATE, last)
        if ended(last):
            return
    else:  # a resumed job may have ended meanwhile: look at once, without waiting
        cursor, last = resume, None
        entries = events.read(svc.conn, key, cursor, None)
    beat = time.monotonic()
    with svc.events.subscribe(key, cursor) as subscription:
        while True:
            if entries is None:
                entries = subscription.wait(cursor, BLOCK_MS / 1000 * random.uniform(0.8, 1.2))
            if entries:
                cursor = entries[-1][0]
                if kind is None:
                    for event_id, fields in entries:
                        last = with_base(json.loads(fields["data"]), base)
                        yield _event(event_id, fields["kind"], last)
                        if ended(last):
                            return
                else:  # many changes, one status
                    last = current()
                    yield _event(cursor, kind, last)
                    if ended(last):
                        return
            else:
                now = current()
                if ended(now):  # it ended without an event we saw (a killed worker, an expiry, a resume)
                    yield _event(cursor, kind or events.STATE, now)
                    return
            entries = None
            if time.monotonic() - beat >= KEEP_ALIVE:
                yield ": keep-alive\n\n"
                beat = time.monotonic()


def _leased(body: Iterator[str], lease: Lease) -> Iterator[str]:
    """``body``, renewing the stream's place among its vendor's open streams as it goes."""
    for chunk in body:
        lease.renew()
        yield chunk


def _until_redis_fails(body: Iterator[str]) -> Iterator[str]:
    """``body`` until a Redis error ends it: with a comment, never a final event Redis did not give.

    An ``expired`` event would tell the client its job is gone; ended without one, a client
    reconnects (EventSource with ``Last-Event-ID``; the Python client polls) and gets the 503 or,
    once Redis answers again, the status.
    """
    try:
        yield from body
    except redis.RedisError as exc:
        log.warning("event stream ended: Redis unavailable: %s", exc)
        yield ": the queue (Redis) is unavailable; reconnect\n\n"


def _stream(body: Iterator[str]) -> Response:
    """The stream's answer, holding one of the vendor's places until it ends (or the client leaves)."""
    lease = services().open_streams.take(g.vendor.name)
    if lease is None:
        cap = services().open_streams.cap
        raise TooManyStreams(f"{cap} event streams are open already; wait for one to end, or poll")
    response = Response(
        stream_with_context(_until_redis_fails(_leased(body, lease))),
        mimetype="text/event-stream",
        headers=HEADERS,
    )
    response.call_on_close(lease.release)
    return response


bp = Blueprint("streams", __name__, url_prefix="/api/image-queue")


@bp.get("/job/<job_id>/events")
def job_events(job_id: str):
    jobs = services().jobs
    vendor, operator, base = g.vendor.name, g.vendor.operator, result_base()
    jobs.job_for(vendor, job_id, operator=operator)  # 404 before anything is streamed
    events.valid_id(request.headers.get("Last-Event-ID"))  # and 400

    def current() -> dict[str, Any]:
        try:
            return jobs.job_view(jobs.job_for(vendor, job_id, operator=operator), base)
        except NotFound:  # expired while followed (a Redis error is no expiry: it ends the stream)
            return {"job_id": job_id, "state": "expired"}

    def ended(view: dict[str, Any]) -> bool:
        return view["state"] in DONE_STATES or view["state"] == "expired"

    return _stream(_follow(events.KEY_JOB_EVENTS.format(job_id), current, ended, None, base))


@bp.get("/batch/<batch_id>/events")
def batch_events(batch_id: str):
    jobs = services().jobs
    vendor, operator = g.vendor.name, g.vendor.operator
    jobs.batch_view(vendor, batch_id, operator=operator)  # 404 before anything is streamed
    events.valid_id(request.headers.get("Last-Event-ID"))  # and 400

    def current() -> dict[str, Any]:
        return jobs.batch_view(vendor, batch_id, operator=operator)

    def ended(view: dict[str, Any]) -> bool:
        return all(item["state"] in DONE_STATES or item["state"] == "expired" for item in view["jobs"])

    return _stream(_follow(events.KEY_BATCH_EVENTS.format(batch_id), current, ended, "batch"))
