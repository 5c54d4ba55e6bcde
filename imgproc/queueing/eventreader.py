"""One reader per API process for every open event stream: one Redis connection, however many streams.

A stream that waited in an ``XREAD BLOCK`` of its own held a connection of the process's pool for as
long as it stayed open, so 100 open streams (redis-py's default pool) left every other request of the
process a ``503`` (issue 22). A pool of the streams' own would spare the other requests but still cost
Redis a connection per open stream (2,000 per process against Redis' default ``maxclients`` of 10,000,
which the workers share). Here each stream subscribes to the process's reader, whose one ``XREAD
BLOCK`` waits on every followed key at once and hands each subscriber the events after its cursor. A
subscriber the current ``XREAD`` does not cover yet wakes it: it appends to the process's own wake
stream, which that ``XREAD`` also waits on, so no wake is lost between two reads.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import TracebackType

import redis

from .events import decoded

log = logging.getLogger(__name__)

#: The wake stream of one reader (one API process); it expires when its process has gone.
KEY_WAKE = "imgproc:events:wake:{}"
WAKE_TTL = 3600
#: Longest ``XREAD BLOCK`` of the reader: how long a key nobody follows any more may still be waited on.
BLOCK_MS = 5000
#: Events read per key in one ``XREAD`` (the rest come with the next).
COUNT = 100
#: Seconds between attempts while Redis fails.
RETRY_AFTER = 1.0

Entry = tuple[str, dict[str, str]]


def _order(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


class Subscription:
    """One stream's events after its cursor, collected by the reader until ``wait`` takes them."""

    def __init__(self, reader: EventReader, key: str, after: str):
        self.reader, self.key, self.after = reader, key, after
        self._ready = threading.Condition(reader.lock)
        self._pending: list[Entry] = []
        self._error: Exception | None = None

    def wait(self, after: str, timeout: float) -> list[Entry]:
        """The events after ``after``, waiting up to ``timeout`` seconds for the first ([] if none came).

        Raises the reader's Redis error, so the stream ends as one that read Redis itself would.
        """
        with self._ready:
            self._seen(after)
            if not self._pending and self._error is None:
                self._ready.wait(timeout)
            error, self._error = self._error, None
            if error is not None:
                raise error
            found, self._pending = self._pending, []
            return found

    def _seen(self, after: str) -> None:
        """Move the cursor to ``after`` (events the stream read elsewhere), never back."""
        if _order(after) > _order(self.after):
            self.after = after
            self._pending = [e for e in self._pending if _order(e[0]) > _order(after)]

    def _deliver(self, entries: list[Entry]) -> None:
        new = [e for e in entries if _order(e[0]) > _order(self.after)]
        if new:
            self._pending += new
            self.after = new[-1][0]
            self._ready.notify()

    def _fail(self, error: Exception) -> None:
        self._error = error
        self._ready.notify()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.reader.unsubscribe(self)


class EventReader:
    """The process's reader of event streams: ``subscribe(key, after)`` for each open stream.

    ``conn`` is a client of its own (its pool is never the requests'), used by the reader's thread
    only; ``wake_conn`` sends the wakes (short commands, from the requests' threads).
    """

    def __init__(self, conn: redis.Redis, wake_conn: redis.Redis):
        self.conn, self.wake_conn = conn, wake_conn
        self.lock = threading.Lock()
        self.wake_key = KEY_WAKE.format(uuid.uuid4().hex)
        self._wake_id = "0-0"
        self._subs: dict[str, set[Subscription]] = {}  # by key: an event is handed to its key's only
        self._reading: dict[str, str] = {}  # what the XREAD now waiting covers: key -> cursor
        self._thread: threading.Thread | None = None
        self._closed = False

    def subscribe(self, key: str, after: str) -> Subscription:
        """Follow ``key`` from ``after``; use it as a context manager, which unsubscribes."""
        sub = Subscription(self, key, after)
        with self.lock:
            self._subs.setdefault(key, set()).add(sub)
            covered = key in self._reading and _order(self._reading[key]) <= _order(after)
            if self._thread is None:  # at first use: in the process that serves, after gunicorn's fork
                self._thread = threading.Thread(target=self._run, name="imgproc-events", daemon=True)
                self._thread.start()
        if not covered:
            try:
                self._wake()
            except BaseException:
                self.unsubscribe(sub)
                raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop following (the next ``XREAD`` leaves the key out)."""
        with self.lock:
            subs = self._subs.get(sub.key, set())
            subs.discard(sub)
            if not subs:
                self._subs.pop(sub.key, None)

    def close(self) -> None:
        """Stop the thread and close the reader's connections."""
        with self.lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            try:
                self._wake()
            except redis.RedisError:
                pass  # the read fails too, and the thread sees it is closed
            thread.join(BLOCK_MS / 1000 + 5)
        self.conn.close()

    def _wake(self) -> None:
        with self.wake_conn.pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=16, approximate=False)
            pipe.expire(self.wake_key, WAKE_TTL)
            pipe.execute()

    def _run(self) -> None:
        while True:
            with self.lock:
                if self._closed:
                    return
                subs = [sub for same in self._subs.values() for sub in same]
                self._reading = reading = {
                    key: min((sub.after for sub in same), key=_order) for key, same in self._subs.items()
                }
            try:
                answer = self.conn.xread(
                    {self.wake_key: self._wake_id, **reading}, count=COUNT, block=BLOCK_MS
                )
            except redis.RedisError as exc:
                log.warning("event streams: Redis unavailable: %s", exc)
                with self.lock:
                    self._reading = {}
                    for sub in subs:
                        sub._fail(exc)
                time.sleep(RETRY_AFTER)
                continue
            self._hand_out(answer or [])

    def _hand_out(self, answer: list) -> None:
        with self.lock:
            for raw_key, raw_entries in answer:
                key = raw_key.decode()
                entries = decoded(raw_entries)
                if key == self.wake_key:
                    self._wake_id = entries[-1][0]
                    continue
                for sub in self._subs.get(key, ()):
                    sub._deliver(entries)
