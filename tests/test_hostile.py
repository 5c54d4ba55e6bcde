"""Hostile photos and URLs through the real pipeline: each fails with a stable code, the worker carries on."""

import io
import struct
import time
import zlib

import psutil
import pytest
from PIL import Image
from rq.job import Job

LIGHT = "/api/image-queue/process-image-queue"


@pytest.fixture
def settings(settings):
    """Small limits so that the slow and endless cases end in a second or two; no retries."""
    return settings.replace(
        fetch_deadline=1.5, fetch_read_timeout=1.0, max_image_bytes=2_000_000, max_attempts=1
    )


def bomb_png(width: int, height: int) -> bytes:
    """A PNG that claims width x height grey pixels, all zero: a few hundred kB that inflate to w*h bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((400, 300), 60).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()[:5000]


HOSTILE = {
    # path: (body or server set-up, expected code)
    "/bomb.png": (lambda: bomb_png(10_000, 10_000), "image_too_large"),
    "/truncated.jpg": (truncated_jpeg, "unsupported_image"),
    "/empty.jpg": (lambda: b"", "unsupported_image"),
    "/text.jpg": (lambda: b"just some text, not a photo\n" * 10, "unsupported_image"),
    "/page.jpg": (
        lambda: b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
        "unsupported_image",
    ),
    "/script.svg.jpg": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "unsupported_image",
    ),
}


def test_hostile_batch_then_a_normal_job_on_the_same_worker(
    client, vendor_key, photo_server, photos, work, settings
):
    acme = vendor_key("acme")
    for path, (body, _) in HOSTILE.items():
        photo_server.serve(path, body())
    photo_server.slow_drip("/drip.jpg", total_bytes=100_000, chunk=100, interval=0.2)
    photo_server.endless("/endless.jpg")
    photo_server.redirect("/to-metadata.jpg", "http://169.254.169.254/latest/meta-data/")
    photo_server.redirect("/to-private.jpg", "http://10.0.0.1/photo.jpg")
    photo_server.serve("/ok.jpg", photos["coffee"])
    cases = {path: code for path, (_, code) in HOSTILE.items()}
    cases.update(
        {
            "/drip.jpg": "timeout",
            "/endless.jpg": "image_too_large",
            "/to-metadata.jpg": "fetch_forbidden",
            "/to-private.jpg": "fetch_forbidden",
        }
    )
    urls = {path: photo_server.url(path) for path in cases}
    urls["private"] = "http://192.168.1.10/photo.jpg"
    cases["private"] = "fetch_forbidden"
    ids = {}
    for name, url in urls.items():
        response = client.post(LIGHT, json={"record_id": name, "image_url": url}, headers=acme)
        assert response.status_code == 202
        ids[name] = response.json["job_id"]
    ok = client.post(LIGHT, json={"record_id": "ok", "image_url": photo_server.url("/ok.jpg")}, headers=acme)

    rss_before = psutil.Process().memory_info().rss
    started = time.monotonic()
    worker = work()
    elapsed = time.monotonic() - started
    rss_growth = psutil.Process().memory_info().rss - rss_before

    for name, code in cases.items():
        job = client.get(f"/api/image-queue/job/{ids[name]}", headers=acme).json
        assert job["state"] == "failed", (name, job)
        assert job["error"]["code"] == code, (name, job["error"])
        rq_job = Job.fetch(ids[name], connection=worker.connection)
        print(f"{name:18} {code:18} {(rq_job.ended_at - rq_job.started_at).total_seconds():6.2f} s")
    print(f"worker RSS growth over the batch: {rss_growth / 2**20:.1f} MiB; batch took {elapsed:.1f} s")
    job = client.get(f"/api/image-queue/job/{ok.json['job_id']}", headers=acme).json
    assert job["state"] == "finished"
    redis_conn = worker.connection
    assert {Job.fetch(i, connection=redis_conn).worker_name for i in [*ids.values(), ok.json["job_id"]]} == {
        worker.name
    }
    assert rss_growth < 150 * 2**20, (
        f"worker memory grew by {rss_growth / 2**20:.0f} MiB"
    )  # a 100-megapixel bomb
    assert elapsed < 15
