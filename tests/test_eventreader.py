"""The API process's one reader of event streams: each subscriber gets its key's events after its cursor."""

from __future__ import annotations

import pytest
import redis

from imgproc.queueing import connect, eventreader
from imgproc.queueing.eventreader import EventReader
from tests.conftest import REDIS_TEST_URL


@pytest.fixture
def reader(redis_conn, monkeypatch):
    # A read that is never woken would wait this long: a new subscriber must not wait for it to end.
    monkeypatch.setattr(eventreader, "BLOCK_MS", 60_000)
    reader = EventReader(connect(REDIS_TEST_URL), redis_conn)
    yield reader
    reader.close()


def add(conn, key: str, n: int) -> list[str]:
    return [conn.xadd(key, {"n": str(i)}).decode() for i in range(n)]


def take(sub, after: str, n: int) -> list:
    """``n`` events after ``after``, however many reads the reader hands them out in."""
    found: list = []
    while len(found) < n:
        got = sub.wait(found[-1][0] if found else after, 10)
        assert got, f"only {len(found)} of {n} events came"
        found += got
    return found


def test_subscribers_get_their_own_keys_events_after_their_cursor(reader, redis_conn):
    first = add(redis_conn, "k:a", 2)
    with reader.subscribe("k:a", first[0]) as a, reader.subscribe("k:b", "0-0") as b:
        # What was there after the cursor comes at once; the other key has nothing.
        assert [e[0] for e in take(a, first[0], 1)] == first[1:]
        assert b.wait("0-0", 0.2) == []
        later = add(redis_conn, "k:b", 3)
        assert [(e[0], e[1]["n"]) for e in take(b, "0-0", 3)] == list(zip(later, "012", strict=True))
        # A third subscriber of a key already read is served by the same read.
        with reader.subscribe("k:a", first[1]) as again:
            new = add(redis_conn, "k:a", 1)
            assert [e[0] for e in take(again, first[1], 1)] == new
            assert [e[0] for e in take(a, first[1], 1)] == new
    assert reader.conn.connection_pool._created_connections == 1  # one connection, however many streams


def test_a_subscriber_that_read_ahead_is_not_given_it_again(reader, redis_conn):
    ids = add(redis_conn, "k:c", 3)
    with reader.subscribe("k:c", "0-0") as sub:
        assert [e[0] for e in take(sub, ids[1], 1)] == ids[2:]


def test_a_redis_error_reaches_the_waiting_streams(redis_conn, monkeypatch):
    monkeypatch.setattr(eventreader, "RETRY_AFTER", 0.1)
    reader = EventReader(connect("redis://127.0.0.1:1/0"), redis_conn)  # nothing listens there
    try:
        with reader.subscribe("k:d", "0-0") as sub, pytest.raises(redis.ConnectionError):
            sub.wait("0-0", 10)
    finally:
        reader.close()
