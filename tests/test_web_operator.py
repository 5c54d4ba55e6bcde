"""The operator's JSON routes behind the page: failed jobs retried all at once, webhooks redelivered."""

from __future__ import annotations

from rq import Queue

from imgproc.adapters.webhooks import DELIVERED, FAILED, WebhookStore
from imgproc.jobtypes import QUEUE_WEBHOOKS

API = "/api/image-queue"


def message(store: WebhookStore, state: str, **attempt) -> None:
    """Webhook msg_1 of acme's job j1, after an attempt that left it ``state``."""
    store.create("msg_1", "acme", "job.finished", "https://hooks.example/in", "{}", job_id="j1")
    store.record_attempt(
        "msg_1", url="https://hooks.example/in", state=state, latency_ms=12, next_try_at=None, **attempt
    )


def test_failed_jobs_of_every_vendor_and_retry_all(client, vendor_key, photo_server, photos, work):
    acme, globex, ops = vendor_key("acme"), vendor_key("globex"), vendor_key("ops", operator=True)
    url = photo_server.url("/missing.jpg")  # 404: fails at once, for good
    for headers, record in ((acme, "a1"), (globex, "g1")):
        body = {"record_id": record, "image_url": url}
        assert client.post(f"{API}/process-image-queue", json=body, headers=headers).status_code == 202
    work()
    failed = client.get(f"{API}/failed", headers=ops).json
    assert failed["total"] == 2
    assert {(j["vendor"], j["record_id"], j["error"]["code"]) for j in failed["jobs"]} == {
        ("acme", "a1", "fetch_failed"),
        ("globex", "g1", "fetch_failed"),
    }
    assert client.get(f"{API}/failed?vendor=globex", headers=ops).json["total"] == 1
    assert client.get(f"{API}/failed?queue=nope", headers=ops).status_code == 400

    photo_server.serve("/missing.jpg", photos["coffee"])  # the photo is there now
    retried = client.post(f"{API}/failed/retry?vendor=acme", headers=ops).json
    assert len(retried["retried"]) == 1 and retried["refused"] == []
    work()
    assert client.get(f"{API}/failed", headers=ops).json["total"] == 1
    jobs = client.get(f"{API}/jobs", headers=acme).json["jobs"]
    assert jobs[0]["state"] == "finished" and jobs[0]["attempts"] == 2
    today = client.get(f"{API}/usage?days=1", headers=ops).json["days"][0]["vendors"]
    # coffee() is 600x400: 0.24 megapixels, counted once, when the job was done
    assert today["acme"] == {"jobs": 1, "megapixels": 0.24, "limited": 0}
    assert today["globex"] == {"jobs": 1, "megapixels": 0, "limited": 0}


def test_failed_webhooks_are_listed_and_redelivered(app, client, vendor_key, redis_conn):
    ops = vendor_key("ops", operator=True)
    store = WebhookStore(app.extensions["imgproc"].engine)
    message(store, FAILED, attempt=3, status_code=500, error="HTTP 500")
    listed = client.get(f"{API}/webhooks/failed", headers=ops).json
    assert listed["total"] == 1
    assert {k: listed["webhooks"][0][k] for k in ("id", "vendor", "last_status", "attempts")} == {
        "id": "msg_1",
        "vendor": "acme",
        "last_status": 500,
        "attempts": 3,
    }
    answer = client.post(f"{API}/webhooks/msg_1/redeliver", headers=ops)
    assert answer.status_code == 202 and answer.json["state"] == "pending"
    assert store.get("msg_1")["state"] == "pending"
    (job,) = Queue(QUEUE_WEBHOOKS, connection=redis_conn).get_jobs()
    assert job.args == ("msg_1",) and job.meta["vendor"] == "acme"
    assert client.get(f"{API}/webhooks/failed", headers=ops).json["total"] == 0
    assert client.post(f"{API}/webhooks/msg_2/redeliver", headers=ops).status_code == 404


def test_a_delivered_webhook_is_not_sent_again(
    app, client, vendor_key, redis_conn, settings, monkeypatch, capsys
):
    """Issue 22 finding 14: an operator's redeliver of a delivered message sent it a second time (202)."""
    from imgproc.tools.cli import main

    ops = vendor_key("ops", operator=True)
    store = WebhookStore(app.extensions["imgproc"].engine)
    message(store, DELIVERED, attempt=1, status_code=200, error=None)
    answer = client.post(f"{API}/webhooks/msg_1/redeliver", headers=ops)
    assert answer.status_code == 409 and answer.json["error"]["code"] == "conflict", answer.json
    assert "msg_1 was delivered already" in answer.json["error"]["message"]
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("IMGPROC_DATABASE_URL", settings.database_url)
    capsys.readouterr()
    assert main(["webhooks", "redeliver", "msg_1"]) == 1
    assert "msg_1 was delivered already" in capsys.readouterr().err
    assert store.get("msg_1")["state"] == DELIVERED
    assert Queue(QUEUE_WEBHOOKS, connection=redis_conn).count == 0  # nothing sent again
