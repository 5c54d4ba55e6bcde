"""Per-vendor rate limits: counted in Redis, shared by API processes, never bypassed when Redis is down."""

import io
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from imgproc.api import create_app
from imgproc.testing import free_port

BG = "/api/image-queue/remove-bg-queue"
LIGHT = "/api/image-queue/process-image-queue"
BULK_BG = "/api/image-queue/bulk-remove-bg"
BULK_LIGHT = "/api/image-queue/bulk-process-image"
CROP = "/api/image-queue/crop-face-queue"
BULK_CROP = "/api/image-queue/bulk-crop-face"
URL = "https://example.com/a.jpg"


def items(n):
    return {"items": [{"record_id": f"r{i}", "image_url": URL} for i in range(n)]}


@pytest.fixture
def limited(settings, redis_conn):
    """``limited(**limits)`` builds an app whose limits are small enough to reach in a test."""
    apps = []

    def make(**limits):
        app = create_app(settings.replace(**limits))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["imgproc"].engine.dispose()


def add_vendor(app, name):
    return {"X-API-Key": app.extensions["imgproc"].vendors.add(name)}


def test_headers_and_429_in_the_error_shape(limited):
    app = limited(limit_image="3 per minute")
    client, acme = app.test_client(), add_vendor(app, "acme")
    remaining = []
    for i in range(3):
        response = client.post(LIGHT, json={"record_id": f"r{i}", "image_url": URL}, headers=acme)
        assert response.status_code == 202
        # flask-limiter reports one of the limits that apply (here maybe the all-requests one)
        assert int(response.headers["X-RateLimit-Limit"]) in (3, 100000)
        assert int(response.headers["X-RateLimit-Reset"]) > time.time()
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == 3
    response = client.post(LIGHT, json={"record_id": "r4", "image_url": URL}, headers=acme)
    assert response.status_code == 429
    assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == ("3", "0")
    assert response.json["error"]["code"] == "rate_limited"
    assert response.json["error"]["message"] == "image limit of 3 per 1 minute reached"
    assert 0 < int(response.headers["Retry-After"]) <= 60
    # another vendor has its own counters, and polling is not an image request
    other = add_vendor(app, "other")
    assert client.post(LIGHT, json={"record_id": "x", "image_url": URL}, headers=other).status_code == 202
    assert client.get("/api/image-queue/queue-stats", headers=acme).status_code == 200


def test_bulk_background_removal_counts_every_item(limited, redis_conn):
    app = limited(limit_bg_removal="5 per hour")
    client, acme = app.test_client(), add_vendor(app, "acme")
    assert client.post(BULK_BG, json=items(4), headers=acme).status_code == 202
    response = client.post(BULK_BG, json=items(2), headers=acme)  # 4 + 2 > 5
    assert (
        response.status_code == 429
        and "bg-removal limit of 5 per 1 hour" in response.json["error"]["message"]
    )
    assert client.post(BG, json={"record_id": "one", "image_url": URL}, headers=acme).status_code == 202
    assert client.post(BG, json={"record_id": "two", "image_url": URL}, headers=acme).status_code == 429
    # light jobs are not background removals
    assert client.post(BULK_LIGHT, json=items(10), headers=acme).status_code == 202
    # a bulk larger than the whole allowance can never pass
    assert client.post(BULK_BG, json=items(6), headers=add_vendor(app, "big")).status_code == 429


def test_bulk_operations_and_all_requests(limited):
    app = limited(limit_bulk="2 per hour", limit_global="6 per minute")
    client, acme = app.test_client(), add_vendor(app, "acme")
    assert [client.post(BULK_LIGHT, json=items(1), headers=acme).status_code for _ in range(3)] == [
        202,
        202,
        429,
    ]
    statuses = [client.get("/api/image-queue/queue-stats", headers=acme).status_code for _ in range(4)]
    # the all-requests limit counts every request, the refused bulk too: 3 bulks + 3 polls = 6
    assert statuses == [200, 200, 200, 429]
    assert client.get("/health").status_code == 200  # no key, no limit


def test_two_api_processes_share_the_counters(limited):
    first, second = limited(limit_image="3 per minute"), limited(limit_image="3 per minute")
    acme = add_vendor(first, "acme")
    a, b = first.test_client(), second.test_client()
    codes = [
        c.post(LIGHT, json={"record_id": "r", "image_url": URL}, headers=acme).status_code
        for c in (a, b, a, b)
    ]
    assert codes == [202, 202, 202, 429]


def start_redis(port):
    proc = subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def test_redis_down_is_503_never_unlimited_and_recovers(limited):
    port = free_port()
    redis_proc = start_redis(port)
    try:
        app = limited(redis_url=f"redis://127.0.0.1:{port}/0", limit_image="2 per minute")
        client, acme = app.test_client(), add_vendor(app, "acme")
        assert client.post(LIGHT, json={"record_id": "r1", "image_url": URL}, headers=acme).status_code == 202
        redis_proc.terminate()
        redis_proc.wait()
        for _ in range(3):
            response = client.post(LIGHT, json={"record_id": "r2", "image_url": URL}, headers=acme)
            assert response.status_code == 503 and response.json["error"]["code"] == "unavailable"
        assert client.get("/health").json["failing"] == ["redis"]
        redis_proc = start_redis(port)  # empty: no persistence here, so the counters start over
        codes = [
            client.post(LIGHT, json={"record_id": f"r{i}", "image_url": URL}, headers=acme).status_code
            for i in range(3)
        ]
        assert codes == [202, 202, 429]
    finally:
        redis_proc.terminate()
        redis_proc.wait()


def test_only_accepted_requests_use_up_the_enqueue_limits(limited):
    app = limited(limit_image="2 per minute", limit_bg_removal="2 per minute", max_request_bytes=4096)
    client, acme = app.test_client(), add_vendor(app, "acme")
    too_large = client.post(
        BG, data={"record_id": "big", "image": (io.BytesIO(b"x" * 8192), "big.jpg")}, headers=acme
    )
    assert too_large.status_code == 413
    wrong = client.post(BG, json={"record_id": "w", "image_url": URL, "options": {"colour": 1}}, headers=acme)
    assert wrong.status_code == 400 and "colour" in wrong.json["error"]["message"]
    for i in range(2):
        accepted = client.post(BG, json={"record_id": f"r{i}", "image_url": URL}, headers=acme)
        assert accepted.status_code == 202, accepted.json
        # Retry-After belongs to refusals: on a 202 it would read as "come back later".
        assert "Retry-After" not in accepted.headers and "X-RateLimit-Remaining" in accepted.headers
    refused = client.post(BG, json={"record_id": "r3", "image_url": URL}, headers=acme)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert too_large.headers.get("Retry-After") is None and wrong.headers.get("Retry-After") is None


def test_concurrent_requests_never_overshoot_a_limit(limited, redis_conn):
    """Check and use are one Redis call: of 12 requests at once against 5 per minute, exactly 5 pass."""
    app = limited(limit_image="5 per minute")
    acme = add_vendor(app, "acme")
    barrier = threading.Barrier(12)

    def post(i):
        client = app.test_client()
        barrier.wait()
        return client.post(LIGHT, json={"record_id": f"r{i}", "image_url": URL}, headers=acme).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(post, range(12)))
    assert sorted(codes) == [202] * 5 + [429] * 7
    # What the vendor sees of its limits says the same; the counters expire with their window.
    limits = app.test_client().get("/api/image-queue/limits", headers=acme).json["limits"]
    assert limits["image"]["remaining"] == 0 and 0 < limits["image"]["reset_in"] <= 60
    assert limits["global"]["remaining"] == limits["global"]["amount"] - 13
    assert 0 < redis_conn.pttl("imgproc:limit:image:acme") <= 60_000


def test_a_refused_bulk_waits_until_its_items_fit(limited):
    app = limited(limit_bg_removal="5 per 10 seconds")
    client, acme = app.test_client(), add_vendor(app, "acme")
    assert client.post(BULK_BG, json=items(3), headers=acme).status_code == 202
    time.sleep(1.2)
    assert client.post(BULK_BG, json=items(2), headers=acme).status_code == 202  # 5 of 5 used
    refused = client.post(BULK_BG, json=items(3), headers=acme)
    # 3 more need the first bulk's 3 units gone: about 10 - 1.2 s from now, not the second bulk's 10 s.
    assert refused.status_code == 429 and 8 <= int(refused.headers["Retry-After"]) <= 9
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_face_crops_that_remove_the_background_count_against_its_limit(limited):
    """Issue 22 finding 4: a 40-item crop bulk with remove_background was accepted, the counter untouched.

    Each job whose options run the background-removal model costs one unit, whatever the endpoint: a
    bulk item's own options over the bulk's defaults, and a preset's remove_background.
    """
    app = limited(limit_bg_removal="30 per hour")
    client, acme = app.test_client(), add_vendor(app, "acme")

    def left():
        return client.get("/api/image-queue/limits", headers=acme).json["limits"]["bg-removal"]["remaining"]

    crop_bg = {**items(40), "options": {"remove_background": True}}
    refused = client.post(BULK_CROP, json=crop_bg, headers=acme)
    assert refused.status_code == 429, refused.json
    assert "bg-removal limit of 30 per 1 hour" in refused.json["error"]["message"] and left() == 30
    # 20 crops: 10 plain, 10 to a preset (which removes the background), 4 of those told not to
    mixed = items(20)
    for i, item in enumerate(mixed["items"][10:]):
        item["options"] = {"preset": "us-passport", **({"remove_background": False} if i < 4 else {})}
    assert client.post(BULK_CROP, json=mixed, headers=acme).status_code == 202 and left() == 24
    assert client.post(BULK_CROP, json=items(5), headers=acme).status_code == 202 and left() == 24
    single = {"record_id": "one", "image_url": URL, "options": {"remove_background": True}}
    assert client.post(CROP, json=single, headers=acme).status_code == 202 and left() == 23
    upload = {"record_id": "up", "image": (io.BytesIO(b"jpeg"), "a.jpg"), "options": '{"preset": "avatar"}'}
    assert client.post(CROP, data=upload, headers=acme).status_code == 202 and left() == 22
    # a wrong option is the 400 that names it, not a 429, and costs nothing
    wrong = {**items(30), "options": {"remove_background": True, "colour": 1}}
    response = client.post(BULK_CROP, json=wrong, headers=acme)
    assert response.status_code == 400 and "colour" in response.json["error"]["message"] and left() == 22
    assert client.post(BULK_BG, json=items(22), headers=acme).status_code == 202 and left() == 0
    assert client.post(CROP, json=single, headers=acme).status_code == 429
    assert client.post(CROP, json={**single, "options": {}}, headers=acme).status_code == 202
