"""A Redis error while a job is read is a 503, never a missing job (issue 21).

Only a missing job (rq's NoSuchJobError, a malformed id) is 404: a client
retries a 503 but takes a 404 as final, and an event stream's ``expired``
tells it the job is gone. Here the fetch alone fails, as a timeout, a
failover or a full connection pool would: the key check still works.
"""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest
import redis
from rq.job import Job

from imgproc.api import streams
from imgproc.worker.webhooks import _show_on_job
from tests.test_events import parse

LIGHT = "/api/image-queue/process-image-queue"


@pytest.fixture
def queued(client, vendor_key):
    """A vendor's key and a job of theirs that stays queued (no worker runs)."""
    acme = vendor_key("acme")
    body = {"record_id": "r", "image_url": "http://127.0.0.1:9/a.jpg"}
    return acme, client.post(LIGHT, headers=acme, json=body).json["job_id"]


def failing_fetch(monkeypatch, error: type[redis.RedisError], after: int = 0) -> list[str]:
    """Job.fetch answers ``after`` times, then raises ``error``; the ids asked for are listed."""
    real, calls = Job.fetch.__func__, []

    def fetch(cls, id, connection=None, serializer=None):
        calls.append(id)
        if len(calls) > after:
            raise error("Timeout reading from 127.0.0.1:6379")
        return real(cls, id, connection=connection, serializer=serializer)

    monkeypatch.setattr(Job, "fetch", classmethod(fetch))
    return calls


@pytest.mark.parametrize("error", [redis.TimeoutError, redis.ConnectionError])
def test_a_redis_error_while_a_job_is_read_is_503_and_a_missing_job_still_404(
    client, queued, monkeypatch, error
):
    acme, job_id = queued
    with monkeypatch.context() as patch:
        calls = failing_fetch(patch, error)
        for method, path in [
            ("GET", f"/api/image-queue/job/{job_id}"),
            ("DELETE", f"/api/image-queue/job/{job_id}"),
            ("POST", f"/api/image-queue/job/{job_id}/retry"),
            ("GET", f"/api/image-queue/job/{job_id}/events"),
        ]:
            response = client.open(path, method=method, headers=acme)
            assert (response.status_code, response.json["error"]["code"]) == (503, "unavailable"), path
        assert len(calls) == 4
    for missing in ["0" * 32, "not.an.id"]:
        response = client.get(f"/api/image-queue/job/{missing}", headers=acme)
        assert (response.status_code, response.json["error"]["code"]) == (404, "not_found"), missing
    assert client.get(f"/api/image-queue/job/{job_id}", headers=acme).json["state"] == "queued"


def test_a_redis_error_while_a_stream_follows_a_job_ends_it_without_expired(
    client, queued, monkeypatch, caplog
):
    acme, job_id = queued
    monkeypatch.setattr(streams, "BLOCK_MS", 300)
    # The route's own check and the first status answer; the next look at the job fails.
    calls = failing_fetch(monkeypatch, redis.TimeoutError, after=2)
    with caplog.at_level(logging.WARNING, logger="imgproc.api"):
        response = client.get(f"/api/image-queue/job/{job_id}/events", headers=acme)
        text = response.get_data(as_text=True)
    comments, found = parse(text)
    assert response.status_code == 200 and len(calls) == 3
    assert [event["data"]["state"] for event in found] == ["queued"]  # no final "expired"
    assert comments[-1] == ": the queue (Redis) is unavailable; reconnect"
    assert "Redis unavailable" in caplog.text


def test_a_redis_error_showing_a_webhook_on_its_job_is_logged_not_taken_for_an_expiry(
    redis_conn, queued, monkeypatch, caplog
):
    _, job_id = queued
    runtime = SimpleNamespace(conn=redis_conn)
    message = {"id": "msg_1", "job_id": job_id}
    with caplog.at_level(logging.WARNING, logger="imgproc.webhooks"):
        _show_on_job(runtime, {**message, "job_id": "0" * 32}, "delivered", 1, 200)  # expired: quiet
        assert not caplog.records
        with monkeypatch.context() as patch:
            failing_fetch(patch, redis.ConnectionError)
            _show_on_job(runtime, message, "delivered", 1, 200)  # not raised: rq would send it again
    assert f"msg_1: its delivered state not shown on job {job_id}" in caplog.text
    _show_on_job(runtime, message, "delivered", 1, 200)
    assert Job.fetch(job_id, connection=redis_conn).meta["webhook"]["state"] == "delivered"


def test_every_api_route_answers_503_when_redis_goes_down_after_the_key_check(app, client, vendor_key):
    """The rule, route by route (every /api/ rule of the app, new ones too): past the key check and the
    rate limits, Redis goes away (the API's pool pointed at a closed port) and the answer is 503
    ``unavailable``: never a 404, a 500 or an answer made up without Redis. Each route gets a body it
    accepts, so that what is checked is its reads. The routes that need no Redis are listed below.
    """
    ops = vendor_key("ops", operator=True)
    svc = app.extensions["imgproc"]
    pool = svc.conn.connection_pool
    port = pool.connection_kwargs["port"]

    @app.before_request
    def redis_goes_down() -> None:  # after the key check and the limiter: registered after them
        pool.connection_kwargs["port"] = 1
        pool.reset()

    single = {"record_id": "r", "image_url": "http://127.0.0.1:9/a.jpg"}
    bulk = {"items": [single]}
    #: A body each route accepts (the rest take a single job's), by its rule.
    bodies = {
        "/api/image-queue/pause": {"queue": "bg-removal"},
        "/api/image-queue/resume": {"queue": "bg-removal"},
        "/api/image-queue/jobs/<any(cancel, retry):action>": {"state": "failed", "dry_run": True},
        "/api/image-queue/plans": {"name": "gold", "weight": 2},
        "/api/image-queue/plans/<name>": {"weight": 2},
        "/api/image-queue/vendors": {"name": "newco"},
        "/api/image-queue/vendors/<name>": {"disabled": True},
    }
    answers = {}
    try:
        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith("/api/"):
                continue
            path = re.sub(r"<any\(([a-z]+)[^>]*>", r"\1", rule.rule)  # an any() converter: its first choice
            path = re.sub(r"<(?:[^:>]*:)?([^>]+)>", "0" * 32, path)
            body = bodies.get(rule.rule, bulk if "bulk" in rule.rule else single)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = client.open(path, method=method, headers=ops, json=body)
                error = (response.json or {}).get("error") if response.is_json else None
                answers[f"{method} {path}"] = (response.status_code, error and error["code"])
                pool.connection_kwargs["port"] = port  # back for the next request's key check
                pool.reset()
    finally:
        pool.connection_kwargs["port"] = port
        pool.reset()
    zeros = "0" * 32
    # What needs the database alone: the presets (code), and the operator's records kept in the database
    # (the audit log, vendors and plans: a lookup there answers first, and an unknown name is a 404).
    no_redis = {
        "GET /api/image-queue/presets": (200, None),
        f"POST /api/image-queue/webhooks/{zeros}/redeliver": (404, "not_found"),
        "GET /api/image-queue/audit": (200, None),
        "GET /api/image-queue/vendors": (200, None),
        "POST /api/image-queue/vendors": (201, None),
        f"POST /api/image-queue/vendors/{zeros}/rotate": (404, "not_found"),
        f"GET /api/image-queue/vendors/{zeros}": (404, "not_found"),
        f"PUT /api/image-queue/vendors/{zeros}": (404, "not_found"),
        "GET /api/image-queue/plans": (200, None),
        f"PUT /api/image-queue/plans/{zeros}": (404, "not_found"),
        f"DELETE /api/image-queue/plans/{zeros}": (404, "not_found"),
    }
    assert {where: answers.pop(where, None) for where in no_redis} == no_redis
    assert len(answers) >= 20
    assert {where: a for where, a in answers.items() if a != (503, "unavailable")} == {}
