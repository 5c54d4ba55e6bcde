"""Signed webhooks against a local receiver: signatures, retries, refusals, batches, redelivery."""

from __future__ import annotations

import json
import socket

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from imgproc.adapters.webhooks import WebhookStore, new_secret
from tests.webhook_receiver import Receiver

LIGHT = "/api/image-queue/process-image-queue"
BULK_LIGHT = "/api/image-queue/bulk-process-image"


@pytest.fixture
def acme(vendor_key):
    return vendor_key("acme")


@pytest.fixture
def light(photo_server, photos):
    photo_server.serve("/coffee.jpg", photos["coffee"])
    return {"image_url": photo_server.url("/coffee.jpg"), "options": {"resize": [32, 32]}}


@pytest.fixture
def store(runtime):
    return runtime.webhooks


def test_a_finished_job_posts_a_signed_message_that_verifies_with_the_vendors_secret(
    client, acme, light, work, deliver, store
):
    with Receiver() as receiver:
        job_id = client.post(
            LIGHT, json={**light, "record_id": "r1", "webhook_url": receiver.url}, headers=acme
        ).json["job_id"]
        work()
        assert (
            client.get(f"/api/image-queue/job/{job_id}", headers=acme).json["webhook"]["state"] == "pending"
        )
        deliver()
    (got,) = receiver.received
    headers = got["headers"]
    assert headers["webhook-id"].startswith("msg_") and headers["webhook-timestamp"].isdigit()
    assert headers["Content-Type"] == "application/json"
    message = Webhook(store.secret("acme")).verify(got["body"], headers)  # raises unless it verifies
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(got["body"], headers)
    status = client.get(f"/api/image-queue/job/{job_id}", headers=acme).json
    assert message["type"] == "job.finished" and message["timestamp"].endswith("Z")
    assert message["data"]["job_id"] == job_id and message["data"]["state"] == "finished"
    # Without IMGPROC_PUBLIC_URL a worker has no address for the API: the URL is relative to it.
    relative = {**status["result"], "url": status["result"]["url"].removeprefix("http://localhost")}
    assert message["data"]["result"] == relative and relative["url"].startswith("/media/acme/")
    assert status["webhook"] == {
        "state": "delivered",
        "attempts": 1,
        "last_status": 200,
        "id": headers["webhook-id"],
    }
    (attempt,) = store.attempts(headers["webhook-id"])
    assert attempt["status_code"] == 200 and attempt["latency_ms"] >= 0 and attempt["url"] == receiver.url


def test_a_receiver_failing_twice_gets_the_same_message_three_times(
    client, acme, light, work, deliver, store
):
    with Receiver([500, 503, 200]) as receiver:
        job_id = client.post(
            LIGHT, json={**light, "record_id": "r1", "webhook_url": receiver.url}, headers=acme
        ).json["job_id"]
        work()
        deliver()
    ids = {r["headers"]["webhook-id"] for r in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    # IMGPROC_WEBHOOK_BACKOFF=1,1 in the tests; rq schedules in whole seconds, so a gap may be shorter.
    assert all(gap >= 0.3 for gap in gaps), gaps
    for got in receiver.received:  # each attempt signed anew, each verifies
        Webhook(store.secret("acme")).verify(got["body"], got["headers"])
    (message_id,) = ids
    assert [a["status_code"] for a in store.attempts(message_id)] == [500, 503, 200]
    assert [a["next_try_at"] is not None for a in store.attempts(message_id)] == [True, True, False]
    status = client.get(f"/api/image-queue/job/{job_id}", headers=acme).json
    assert status["webhook"]["state"] == "delivered" and status["webhook"]["attempts"] == 3


def test_410_stops_and_redeliver_sends_the_same_message_again(
    client, acme, light, work, deliver, store, capsys, monkeypatch, settings
):
    from imgproc.tools.cli import main

    with Receiver([410, 200]) as receiver:
        job_id = client.post(
            LIGHT, json={**light, "record_id": "r1", "webhook_url": receiver.url}, headers=acme
        ).json["job_id"]
        work()
        deliver()
        assert len(receiver.received) == 1  # Gone: no retry
        status = client.get(f"/api/image-queue/job/{job_id}", headers=acme).json
        assert status["webhook"] == {
            "state": "failed",
            "attempts": 1,
            "last_status": 410,
            "id": status["webhook"]["id"],
        }
        for name, value in (
            ("REDIS_URL", settings.redis_url),
            ("IMGPROC_DATABASE_URL", settings.database_url),
        ):
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert main(["webhooks", "failed"]) == 0
        listed = capsys.readouterr().out
        assert status["webhook"]["id"] in listed and "410" in listed
        assert main(["webhooks", "redeliver", status["webhook"]["id"]]) == 0
        deliver()
    first, second = receiver.received
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == status["webhook"]["id"]
    assert first["body"] == second["body"]
    after = client.get(f"/api/image-queue/job/{job_id}", headers=acme).json["webhook"]
    assert after["state"] == "delivered" and after["attempts"] == 2
    assert main(["webhooks", "failed"]) == 0 and "no undelivered webhooks" in capsys.readouterr().out
    assert main(["webhooks", "redeliver", "msg_nothing"]) == 1


def test_a_failed_job_and_a_batch_announce_themselves(client, acme, light, photo_server, work, deliver):
    with Receiver() as receiver:
        items = [
            {"record_id": "ok", "image_url": light["image_url"]},
            {"record_id": "gone", "image_url": photo_server.url("/missing.jpg")},
        ]
        batch = client.post(BULK_LIGHT, json={"items": items, "webhook_url": receiver.url}, headers=acme).json
        work()
        deliver()
    messages = [json.loads(r["body"]) for r in receiver.received]
    assert sorted(m["type"] for m in messages) == ["batch.completed", "job.failed", "job.finished"]
    failed = next(m for m in messages if m["type"] == "job.failed")
    assert failed["data"]["error"]["code"] == "fetch_failed" and failed["data"]["record_id"] == "gone"
    completed = next(m for m in messages if m["type"] == "batch.completed")
    assert completed["data"]["batch_id"] == batch["batch_id"]
    assert completed["data"]["counts"]["finished"] == 1 and completed["data"]["counts"]["failed"] == 1


def test_private_webhook_addresses_are_refused(client, acme, light, work, deliver, store, monkeypatch):
    refused = client.post(
        LIGHT, json={**light, "record_id": "r1", "webhook_url": "http://10.1.2.3/hook"}, headers=acme
    )
    assert refused.status_code == 400 and "webhook_url" in refused.json["error"]["message"]
    assert (
        client.post(
            LIGHT, json={**light, "record_id": "r1", "webhook_url": "ftp://example.com/x"}, headers=acme
        ).status_code
        == 400
    )

    # A name is checked when it is resolved, at delivery: this one resolves to a private address.
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    job_id = client.post(
        LIGHT, json={**light, "record_id": "r2", "webhook_url": "http://hooks.example.com/h"}, headers=acme
    ).json["job_id"]
    work()
    deliver()
    webhook = client.get(f"/api/image-queue/job/{job_id}", headers=acme).json["webhook"]
    assert webhook["state"] == "failed" and webhook["attempts"] == 1 and webhook["last_status"] is None
    (attempt,) = store.attempts(webhook["id"])
    assert "fetch_forbidden" in attempt["error"] and "10.0.0.7" in attempt["error"]


def test_during_a_rotation_both_secrets_sign(client, acme, light, work, deliver, store):
    old = store.secret("acme")
    new = store.secret("acme", rotate=True)
    assert new != old and new.startswith("whsec_") and store.secret("acme") == new
    with Receiver() as receiver:
        client.post(LIGHT, json={**light, "record_id": "r1", "webhook_url": receiver.url}, headers=acme)
        work()
        deliver()
    (got,) = receiver.received
    assert len(got["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(got["body"], got["headers"])
    # After the grace period only the new one signs.
    assert WebhookStore(store._engine, grace=0).signing_secrets("acme") == [new]


def test_the_docs_receiver_example_verifies_a_real_message(client, acme, light, work, deliver, store):
    from imgproc.config import ROOT

    page = (ROOT / "docs" / "webhooks.md").read_text()
    start = page.index("import base64, hashlib, hmac, time")
    code = page[start : page.index("```", start)]
    namespace: dict = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)
    verify = namespace["verify"]
    with Receiver() as receiver:
        client.post(LIGHT, json={**light, "record_id": "r1", "webhook_url": receiver.url}, headers=acme)
        work()
        deliver()
    (got,) = receiver.received
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert verify(store.secret("acme"), headers, got["body"])
    assert not verify(new_secret(), headers, got["body"])
    assert not verify(store.secret("acme"), headers, got["body"] + b" ")
    assert not verify(store.secret("acme"), {**headers, "webhook-timestamp": "1000"}, got["body"])


def test_cancelling_the_last_jobs_of_a_batch_completes_it(client, acme, light, deliver):
    with Receiver() as receiver:
        items = [{"record_id": f"r{i}", "image_url": light["image_url"]} for i in range(2)]
        batch = client.post(BULK_LIGHT, json={"items": items, "webhook_url": receiver.url}, headers=acme).json
        for job_id in batch["job_ids"]:
            assert client.delete(f"/api/image-queue/job/{job_id}", headers=acme).status_code == 200
        deliver()
    (got,) = receiver.received  # cancelled jobs send nothing of their own; the batch's completion is sent
    message = json.loads(got["body"])
    assert message["type"] == "batch.completed" and message["data"]["counts"]["canceled"] == 2
