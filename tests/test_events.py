"""Live events: a job's and a batch's status as Server-Sent Events, resumable with Last-Event-ID."""

from __future__ import annotations

import json
import threading

import pytest

LIGHT = "/api/image-queue/process-image-queue"
BULK_LIGHT = "/api/image-queue/bulk-process-image"


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    from imgproc.api import streams
    from imgproc.worker import stages

    monkeypatch.setattr(stages, "SAVE_EVERY", 0)  # every stage saved, so every stage is an event
    monkeypatch.setattr(streams, "BLOCK_MS", 300)


def parse(text: str) -> tuple[list[str], list[dict]]:
    """The comment lines and the events (id, event, data) of an event-stream body."""
    comments, found = [], []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line.startswith(":"):
                comments.append(line)
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            found.append({**fields, "data": json.loads(fields["data"])})
    return comments, found


def open_stream(client, path, headers, last_id=None) -> dict:
    """Read a whole stream in a thread (it ends when the job does); ``result["response"]`` has it."""
    result = {}
    sent = dict(headers, **({"Last-Event-ID": last_id} if last_id else {}))

    def read():
        response = client.get(path, headers=sent, buffered=False)
        result["response"] = response
        result["text"] = b"".join(response.response).decode()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


@pytest.fixture
def light(client, vendor_key, photo_server, photos):
    photo_server.serve("/coffee.jpg", photos["coffee"])
    return {"image_url": photo_server.url("/coffee.jpg"), "options": {"resize": [32, 32]}}


def test_a_job_stream_shows_each_stage_in_order_and_ends_after_done(client, vendor_key, light, work):
    acme = vendor_key("acme")
    job_id = client.post(LIGHT, json={**light, "record_id": "r1"}, headers=acme).json["job_id"]
    stream = open_stream(client, f"/api/image-queue/job/{job_id}/events", acme)
    work()
    stream["thread"].join(20)
    assert not stream["thread"].is_alive(), "the stream did not end after the job"
    response = stream["response"]
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"
    comments, found = parse(stream["text"])
    assert stream["text"].startswith(": keep-alive\n\n") and comments
    steps = [(e["event"], e["data"]["state"], e["data"]["stage"], e["data"]["progress"]) for e in found]
    assert steps == [
        ("state", "queued", "queued", 0),
        ("state", "started", "fetching", 10),
        ("progress", "started", "inference", 30),
        ("progress", "started", "uploading", 80),
        ("progress", "started", "saving", 90),
        ("progress", "started", "done", 100),
        ("state", "finished", "done", 100),
    ]
    ids = [e["id"] for e in found]
    assert len(set(ids)) == len(ids) and all(e["data"]["job_id"] == job_id for e in found)
    final = client.get(f"/api/image-queue/job/{job_id}", headers=acme).json
    assert found[-1]["data"] == final and final["result"]["width"] == 32

    # A client that lost the connection after the third event gets the rest, not a replay.
    again = open_stream(client, f"/api/image-queue/job/{job_id}/events", acme, last_id=ids[2])
    again["thread"].join(10)
    assert [e["id"] for e in parse(again["text"])[1]] == ids[3:]
    # ... and one that saw the end gets the final status once more, and the stream ends.
    last = open_stream(client, f"/api/image-queue/job/{job_id}/events", acme, last_id=ids[-1])
    last["thread"].join(10)
    assert [e["data"]["state"] for e in parse(last["text"])[1]] == ["finished"]


def test_a_batch_stream_ends_when_its_last_job_ends(client, vendor_key, light, work):
    acme = vendor_key("acme")
    items = [{"record_id": f"r{i}", "image_url": light["image_url"]} for i in range(3)]
    batch = client.post(BULK_LIGHT, json={"items": items, "options": light["options"]}, headers=acme).json
    stream = open_stream(client, f"/api/image-queue/batch/{batch['batch_id']}/events", acme)
    work()
    stream["thread"].join(20)
    assert not stream["thread"].is_alive(), "the stream did not end after the batch"
    found = parse(stream["text"])[1]
    assert {e["event"] for e in found} == {"batch"}
    assert found[0]["data"]["counts"]["queued"] == 3
    assert found[-1]["data"]["counts"]["finished"] == 3 and found[-1]["data"]["progress"] == 100
    assert [e["data"]["done"] for e in found] == sorted(e["data"]["done"] for e in found)


def test_events_of_another_vendor_or_of_nothing_are_404(client, vendor_key, light):
    a, b = vendor_key("vendor-a"), vendor_key("vendor-b")
    job_id = client.post(LIGHT, json={**light, "record_id": "r1"}, headers=a).json["job_id"]
    items = [{"record_id": "r2", "image_url": light["image_url"]}]
    batch_id = client.post(BULK_LIGHT, json={"items": items}, headers=a).json["batch_id"]
    for path in (f"/job/{job_id}/events", f"/batch/{batch_id}/events", "/job/0123456789abcdef/events"):
        response = client.get("/api/image-queue" + path, headers=b)
        assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    assert client.get(f"/api/image-queue/job/{job_id}/events").status_code == 401
