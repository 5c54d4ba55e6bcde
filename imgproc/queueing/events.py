"""Job events: one Redis Stream per job and per batch, read by the API's event streams (SSE).

The worker appends an event whenever a job's state, stage or progress is
saved; the API reads them with ``XREAD`` from the id a client last saw, so a
client that reconnects with ``Last-Event-ID`` gets what it missed, even from
another API process or after a restart. Plain pub/sub would lose whatever
was published while nobody listened.

A job's stream holds the job's status as ``GET /job/<id>`` shows it; a
batch's stream only says which job changed (the API reads the batch's status
afresh, so one event may stand for many changes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import redis

from imgproc.errors import InvalidRequest

KEY_JOB_EVENTS = "imgproc:events:job:{}"
KEY_BATCH_EVENTS = "imgproc:events:batch:{}"
#: Events kept per job (a job has about six) and per batch (about six per job), trimmed approximately.
MAX_JOB_EVENTS = 100
MAX_BATCH_EVENTS = 10_000
#: Kinds of event: the job's state changed, or only its stage and progress.
STATE = "state"
PROGRESS = "progress"

_EVENT_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
#: Each part of a stream id is a 64-bit unsigned number.
MAX_ID_PART = 2**64 - 1


def publish(pipe: redis.Redis | redis.client.Pipeline, view: dict[str, Any], kind: str, ttl: int) -> None:
    """Append the job's status ``view`` to its stream (and a mark to its batch's), kept ``ttl`` seconds.

    Given a client rather than a pipeline, it sends everything in one round trip.
    """
    if not isinstance(pipe, redis.client.Pipeline):
        with pipe.pipeline(transaction=False) as own:
            publish(own, view, kind, ttl)
            own.execute()
        return
    key = KEY_JOB_EVENTS.format(view["job_id"])
    pipe.xadd(key, {"kind": kind, "data": json.dumps(view)}, maxlen=MAX_JOB_EVENTS, approximate=True)
    pipe.expire(key, ttl)
    if view.get("batch_id"):
        batch_key = KEY_BATCH_EVENTS.format(view["batch_id"])
        pipe.xadd(
            batch_key,
            {"job_id": view["job_id"], "state": view["state"]},
            maxlen=MAX_BATCH_EVENTS,
            approximate=True,
        )
        pipe.expire(batch_key, ttl)


def last_id(conn: redis.Redis, key: str) -> str:
    """The id of the newest event of a stream, or ``0-0`` when it has none yet."""
    newest = conn.xrevrange(key, count=1)
    return newest[0][0].decode() if newest else "0-0"


def valid_id(value: str | None) -> str | None:
    """The ``Last-Event-ID`` to resume after, or None without one; InvalidRequest for one Redis cannot read.

    Redis refused an id past 64 bits (``99999999999999999999-0``) after the stream had begun.
    """
    if not value:
        return None
    match = _EVENT_ID.match(value)
    if match is None or max(int(part) for part in match.groups()) > MAX_ID_PART:
        raise InvalidRequest(
            "Last-Event-ID must be the id of an event this stream sent", details={"field": "Last-Event-ID"}
        )
    return value


def read(
    conn: redis.Redis, key: str, after: str, block_ms: int | None, count: int = 100
) -> list[tuple[str, dict]]:
    """Events newer than ``after``, waiting up to ``block_ms`` for the first (None: not at all)."""
    answer = conn.xread({key: after}, count=count, block=block_ms)
    return decoded(answer[0][1]) if answer else []


def decoded(raw: list) -> list[tuple[str, dict[str, str]]]:
    """Stream entries as Redis answers them, as (id, fields) text."""
    return [(i.decode(), {k.decode(): v.decode() for k, v in fields.items()}) for i, fields in raw]
