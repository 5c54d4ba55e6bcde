"""The HTTP contract without a worker: auth, isolation, validation, bulk, stats, health."""

import io

from rq import Queue

BG = "/api/image-queue/remove-bg-queue"
FACE = "/api/image-queue/crop-face-queue"
BULK_BG = "/api/image-queue/bulk-remove-bg"
LIGHT = "/api/image-queue/process-image-queue"


def queued(redis_conn) -> int:
    """Jobs waiting for a worker: in the RQ queues and in the vendors' lanes."""
    from imgproc.queueing.fairshare import FairShare

    lanes = FairShare(redis_conn, cap=1)
    return sum(
        Queue(name, connection=redis_conn).count + lanes.waiting(name)
        for name in ("bg-removal", "face-crop", "image-processing")
    )


def test_missing_or_unknown_key_is_401(client, vendor_key):
    vendor_key("acme")
    for headers in ({}, {"X-API-Key": "ik_nope"}):
        response = client.post(
            BG, json={"record_id": "r1", "image_url": "https://example.com/a.jpg"}, headers=headers
        )
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"


def test_enqueue_and_poll(client, vendor_key, redis_conn):
    acme = vendor_key("acme")
    response = client.post(
        FACE,
        json={
            "record_id": "emp-1",
            "image_url": "https://example.com/a.jpg",
            "options": {"size": [300, 400]},
        },
        headers=acme,
    )
    assert response.status_code == 202
    body = response.json
    assert body["state"] == "queued" and body["status_url"] == f"/api/image-queue/job/{body['job_id']}"
    job = client.get(body["status_url"], headers=acme).json
    assert job["type"] == "crop-face" and job["record_id"] == "emp-1"
    assert job["state"] == "queued" and job["progress"] == 0 and job["max_attempts"] == 3
    assert job["created_at"].endswith("Z") and job["result"] is None and job["error"] is None
    assert Queue("face-crop", connection=redis_conn).count == 1


def test_another_vendors_job_is_404_like_a_missing_one(client, vendor_key):
    a, b = vendor_key("vendor-a"), vendor_key("vendor-b")
    job_id = client.post(
        BG, json={"record_id": "r", "image_url": "https://example.com/a.jpg"}, headers=a
    ).json["job_id"]
    theirs = client.get(f"/api/image-queue/job/{job_id}", headers=b)
    missing = client.get("/api/image-queue/job/0123456789abcdef", headers=b)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json["error"]["code"] == missing.json["error"]["code"] == "not_found"
    assert client.delete(f"/api/image-queue/job/{job_id}", headers=b).status_code == 404
    assert client.get(f"/api/image-queue/job/{job_id}", headers=a).status_code == 200
    assert client.get("/api/image-queue/queue-stats", headers=b).json["vendors"] == {
        "vendor-b": {
            s: 0
            for s in (
                "queued",
                "started",
                "deferred",
                "scheduled",
                "finished",
                "failed",
                "canceled",
                "stopped",
            )
        }
    }


def test_bad_option_is_400_naming_it_and_nothing_is_enqueued(client, vendor_key, redis_conn):
    acme = vendor_key("acme")
    response = client.post(
        BG,
        json={"record_id": "r", "image_url": "https://example.com/a.jpg", "options": {"formatt": "png"}},
        headers=acme,
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_options"
    assert response.json["error"]["details"]["option"] == "formatt"
    assert "formatt" in response.json["error"]["message"]
    assert queued(redis_conn) == 0


def test_unknown_model_is_refused_at_enqueue(client, vendor_key, redis_conn):
    response = client.post(
        BG,
        json={
            "record_id": "r",
            "image_url": "https://example.com/a.jpg",
            "options": {"model": "birefnet-massive"},
        },
        headers=vendor_key("acme"),
    )
    assert response.status_code == 400 and response.json["error"]["details"]["option"] == "model"
    assert queued(redis_conn) == 0


def test_bulk_is_all_or_nothing(client, vendor_key, redis_conn):
    acme = vendor_key("acme")
    items = [{"record_id": f"r{i}", "image_url": f"https://example.com/{i}.jpg"} for i in range(5)]
    items[3]["options"] = {"max_size": -1}
    response = client.post(BULK_BG, json={"items": items}, headers=acme)
    assert response.status_code == 400 and response.json["error"]["details"] == {
        "option": "max_size",
        "item": 3,
    }
    assert queued(redis_conn) == 0

    del items[3]["options"]
    response = client.post(BULK_BG, json={"items": items, "options": {"format": "webp"}}, headers=acme)
    assert response.status_code == 202 and len(response.json["job_ids"]) == 5
    batch = client.get(response.json["status_url"], headers=acme).json
    assert batch["total"] == 5 and batch["counts"]["queued"] == 5 and batch["progress"] == 0
    assert [j["record_id"] for j in batch["jobs"]] == [f"r{i}" for i in range(5)]
    assert client.get(response.json["status_url"], headers=vendor_key("other")).status_code == 404


def test_too_many_items_is_413(client, vendor_key, settings):
    items = [
        {"record_id": f"r{i}", "image_url": "https://example.com/a.jpg"}
        for i in range(settings.max_bulk_items + 1)
    ]
    response = client.post(BULK_BG, json={"items": items}, headers=vendor_key("acme"))
    assert response.status_code == 413 and response.json["error"]["code"] == "too_many_items"


def test_bad_requests(client, vendor_key):
    acme = vendor_key("acme")
    cases = [
        (dict(data="not json", content_type="application/json"), 400, "invalid_request"),
        (dict(data="x", content_type="text/plain"), 415, "unsupported_media_type"),
        (dict(json={"record_id": "r"}), 400, "invalid_request"),
        (dict(json={"record_id": "r", "image_url": "ftp://example.com/a.jpg"}), 400, "invalid_request"),
        (dict(json={"record_id": "r", "image_url": "file:///etc/passwd"}), 400, "invalid_request"),
        (dict(json={"image_url": "https://example.com/a.jpg"}), 400, "invalid_request"),
    ]
    for kwargs, status, code in cases:
        response = client.post(BG, headers=acme, **kwargs)
        assert (response.status_code, response.json["error"]["code"]) == (status, code), kwargs


def test_multipart_upload_and_size_cap(client, vendor_key, settings, photos):
    acme = vendor_key("acme")
    response = client.post(
        FACE,
        headers=acme,
        content_type="multipart/form-data",
        data={
            "record_id": "up-1",
            "options": '{"aspect": "1:1"}',
            "image": (io.BytesIO(photos["astronaut"]), "a.jpg"),
        },
    )
    assert response.status_code == 202
    # A raw body: the test client would spool a form this big to an unclosed temp file.
    too_big = (
        b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
        + b"\xff" * settings.max_request_bytes
        + b"\r\n--x--\r\n"
    )
    response = client.post(FACE, headers=acme, content_type="multipart/form-data; boundary=x", data=too_big)
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"


def test_cancel_a_queued_job(client, vendor_key):
    acme = vendor_key("acme")
    job_id = client.post(
        BG, json={"record_id": "r", "image_url": "https://example.com/a.jpg"}, headers=acme
    ).json["job_id"]
    response = client.delete(f"/api/image-queue/job/{job_id}", headers=acme)
    assert response.status_code == 200 and response.json["state"] == "canceled"
    assert client.delete(f"/api/image-queue/job/{job_id}", headers=acme).status_code == 409


def test_health_names_a_failing_part(client, app):
    body = client.get("/health").json
    assert body == {
        "status": "ok",
        "redis": "ok",
        "database": "ok",
        "workers": 0,
        "providers": {},
        "webhooks": {"waiting": 0, "workers": 0, "warning": None},
    }
    import redis

    app.extensions["imgproc"].conn = redis.Redis(port=1)  # nothing listens there
    response = client.get("/health")
    assert response.status_code == 503 and response.json["failing"] == ["redis"]


def test_queue_stats_per_queue_and_operator_sees_every_vendor(client, vendor_key):
    a, b, ops = vendor_key("vendor-a"), vendor_key("vendor-b"), vendor_key("ops", operator=True)
    client.post(
        BULK_BG,
        json={"items": [{"record_id": f"r{i}", "image_url": "https://example.com/a.jpg"} for i in range(3)]},
        headers=a,
    )
    client.post(FACE, json={"record_id": "x", "image_url": "https://example.com/b.jpg"}, headers=b)
    stats = client.get("/api/image-queue/queue-stats", headers=a).json
    # Only A's own jobs: B's face crop is not counted in A's answer.
    assert stats["queues"]["bg-removal"]["queued"] == 3 and stats["queues"]["face-crop"]["queued"] == 0
    assert stats["queues"]["image-processing"] == {
        "queued": 0,
        "started": 0,
        "scheduled": 0,
        "deferred": 0,
        "finished": 0,
        "failed": 0,
        "workers": 0,
        "paused": False,
    }
    assert list(stats["vendors"]) == ["vendor-a"] and stats["vendors"]["vendor-a"]["queued"] == 3
    everyone = client.get("/api/image-queue/queue-stats", headers=ops).json
    assert everyone["vendors"]["vendor-a"]["queued"] == 3 and everyone["vendors"]["vendor-b"]["queued"] == 1
    assert everyone["queues"]["bg-removal"]["queued"] == 3 and everyone["queues"]["face-crop"]["queued"] == 1


def test_idempotency_key_returns_the_first_job(client, vendor_key, redis_conn):
    a, b = vendor_key("vendor-a"), vendor_key("vendor-b")
    body = {"record_id": "r", "image_url": "https://example.com/a.jpg", "idempotency_key": "upload-42"}
    first = client.post(BG, json=body, headers=a)
    again = client.post(BG, json=body, headers=a)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["job_id"] == first.json["job_id"] and again.json["state"] == "queued"
    assert queued(redis_conn) == 1
    theirs = client.post(BG, json=body, headers=b)  # the same key from another vendor is another job
    assert theirs.status_code == 202 and theirs.json["job_id"] != first.json["job_id"]
    other = client.post(BG, json={**body, "idempotency_key": "upload-43"}, headers=a)
    assert other.status_code == 202 and other.json["job_id"] != first.json["job_id"]
    assert queued(redis_conn) == 3
    ttl = max(redis_conn.ttl(k) for k in redis_conn.scan_iter("imgproc:idempotency:*"))
    assert 24 * 3600 - 10 < ttl <= 24 * 3600


def test_cancelled_jobs_never_run(client, vendor_key, photo_server, photos, runtime):
    """A queued job and one waiting for its retry (scheduled) are both cancelled for good."""
    import time

    from imgproc.jobtypes import QUEUES
    from imgproc.worker import build_worker

    acme = vendor_key("acme")
    photo_server.serve("/a.jpg", photos["coffee"])
    photo_server.serve("/retry.jpg", photos["coffee"])
    photo_server.fail_next("/retry.jpg", 1, status=503)
    retry_id = client.post(
        LIGHT, json={"record_id": "s", "image_url": photo_server.url("/retry.jpg")}, headers=acme
    ).json["job_id"]
    build_worker(runtime.settings, QUEUES, runtime=runtime).work(
        burst=True
    )  # one attempt: 503, retry scheduled
    assert client.get(f"/api/image-queue/job/{retry_id}", headers=acme).json["state"] == "scheduled"
    queued_id = client.post(
        LIGHT, json={"record_id": "q", "image_url": photo_server.url("/a.jpg")}, headers=acme
    ).json["job_id"]
    for job_id in (retry_id, queued_id):
        response = client.delete(f"/api/image-queue/job/{job_id}", headers=acme)
        assert response.status_code == 200 and response.json["state"] == "canceled"
    time.sleep(runtime.settings.retry_intervals[0] + 0.5)
    build_worker(runtime.settings, QUEUES, runtime=runtime).work(burst=True, with_scheduler=True)
    assert photo_server.hits["/retry.jpg"] == 1 and photo_server.hits["/a.jpg"] == 0
    for job_id in (retry_id, queued_id):
        assert client.get(f"/api/image-queue/job/{job_id}", headers=acme).json["state"] == "canceled"
