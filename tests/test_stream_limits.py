"""One vendor's event streams never cost another vendor an answer (issue 22, finding 1).

Against gunicorn as in production (``deploy/gunicorn.conf.py``, gthread, one process) on an embedded
Redis; no worker runs, so every stream stays open, waiting, as behind a photo that drips for minutes.
"""

from __future__ import annotations

import socket
import statistics
import time

import pytest

from imgproc.queueing.openstreams import KEY_OPEN_STREAMS, OpenStreams
from tests.conftest import production_api

API = "/api/image-queue"
#: The streams one vendor opens: above the 100 connections of redis-py's default pool, which every
#: open stream held one of (another vendor's GETs then answered 503), and the cap set for this test.
STREAMS = 150
GETS = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # A stream whose client has gone holds its thread until its next keep-alive: don't wait for it.
    env = {"IMGPROC_MAX_STREAMS_PER_VENDOR": str(STREAMS), "GUNICORN_CMD_ARGS": "--graceful-timeout 2"}
    with production_api(tmp_path_factory.mktemp("streams"), env, threads=256) as local:
        yield local


def open_stream(api: str, key: str, path: str) -> tuple[int, socket.socket, bytes]:
    """A raw connection to an event stream, read past its first event: (status, socket, what was read)."""
    host, port = api.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(f"GET {API}{path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n\r\n".encode())
    seen = b""
    while b"\r\n\r\n" not in seen or (seen.startswith(b"HTTP/1.1 200") and b"event: state" not in seen):
        chunk = sock.recv(65536)
        if not chunk:
            break
        seen += chunk
    if not seen.startswith(b"HTTP/1.1 200"):
        seen += sock.recv(65536)  # the error's body
    return int(seen.split(b" ", 2)[1]), sock, seen


def read_to_end(sock: socket.socket) -> bytes:
    """The rest of a chunked stream, up to its last (empty) chunk."""
    seen = b""
    while not seen.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        seen += chunk
    return seen


def enqueue(http, record_id: str) -> str:
    body = {"record_id": record_id, "image_url": "http://127.0.0.1:9/p.jpg", "options": {"resize": [8, 8]}}
    answer = http.post(f"{API}/process-image-queue", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def timed_gets(http, path: str, n: int) -> tuple[list[int], list[float]]:
    statuses, ms = [], []
    for _ in range(n):
        started = time.perf_counter()
        statuses.append(http.get(path).status_code)
        ms.append((time.perf_counter() - started) * 1000)
    return statuses, ms


def test_one_vendors_streams_leave_another_vendors_requests_alone_and_stop_at_the_cap(stack):
    from imgproc.testing import wait_for

    streamer_key, other_key = stack.add_vendor("streamer"), stack.add_vendor("other")
    streamer, other = stack.http(streamer_key), stack.http(other_key)  # statuses and timings: plain HTTP
    redis = stack.redis()
    opened: list[socket.socket] = []
    try:
        job_id, mine = enqueue(streamer, "watched"), enqueue(other, "own")
        _, quiet_ms = timed_gets(other, f"{API}/job/{mine}", GETS)

        statuses = []
        for _ in range(STREAMS):
            status, sock, _ = open_stream(stack.api, streamer_key, f"/job/{job_id}/events")
            statuses.append(status)
            opened.append(sock)
        clients = redis.info("clients")["connected_clients"]

        # Another vendor, meanwhile: its reads, an enqueue and a stream of its own.
        other_statuses, busy_ms = timed_gets(other, f"{API}/job/{mine}", GETS)
        listed = other.get(f"{API}/jobs?per_page=100").status_code
        enqueued = other.post(
            f"{API}/process-image-queue",
            json={
                "record_id": "during",
                "image_url": "http://127.0.0.1:9/p.jpg",
                "options": {"resize": [8, 8]},
            },
        ).status_code
        own_stream, own_sock, _ = open_stream(stack.api, other_key, f"/job/{mine}/events")
        opened.append(own_sock)
        print(
            f"\n{STREAMS} streams of one vendor: its streams {sorted(set(statuses))}; another vendor's "
            f"GETs {sorted(set(other_statuses))}, median {statistics.median(busy_ms):.1f} ms "
            f"({statistics.median(quiet_ms):.1f} ms with none open), enqueue {enqueued}, its stream "
            f"{own_stream}; Redis clients {clients}"
        )
        assert statuses == [200] * STREAMS
        assert other_statuses == [200] * GETS and listed == 200 and enqueued == 202 and own_stream == 200
        # The streams wait on the process's one reader, not on a connection each.
        assert clients < 40

        # One more of the streamer's is past its cap, counted in Redis for every API process.
        status, sock, body = open_stream(stack.api, streamer_key, f"/job/{job_id}/events")
        sock.close()
        assert status == 429 and b'"too_many_streams"' in body and b"Retry-After: 15" in body
        assert OpenStreams(redis, STREAMS).count("streamer") == STREAMS

        # The job ends: every stream ends with it and gives its place back.
        assert streamer.delete(f"{API}/job/{job_id}").status_code == 200
        for sock in opened[:STREAMS]:
            assert b'"state":"canceled"' in read_to_end(sock)
        wait_for(lambda: redis.zcard(KEY_OPEN_STREAMS.format("streamer")) == 0, 10, "the places back")
        again = enqueue(streamer, "again")
        status, sock, _ = open_stream(stack.api, streamer_key, f"/job/{again}/events")
        opened.append(sock)
        assert status == 200
    finally:
        for sock in opened:
            sock.close()
        streamer.close()
        other.close()
        redis.close()


def test_every_process_counts_the_same_places_and_a_dead_ones_lapse(redis_conn):
    streams, elsewhere = OpenStreams(redis_conn, cap=2, lease=0.3), OpenStreams(redis_conn, cap=2, lease=0.3)
    assert streams.take("acme") and elsewhere.take("acme")  # two API processes, one count
    assert streams.take("acme") is None and elsewhere.take("acme") is None
    assert streams.take("globex") is not None
    time.sleep(0.4)  # neither was renewed nor given back: their process was killed
    assert streams.count("acme") == 0
    lease = streams.take("acme")
    lease.release()
    assert streams.count("acme") == 0
