"""A batch's ``results.zip``: streamed a chunk at a time, and counted from a signed-in page too (issue 22, 8).

The memory test runs gunicorn as in production (``deploy/gunicorn.conf.py``, one process) and one worker
of light jobs (``process-image``: no model runs) on an embedded Redis.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import threading
import time
import zipfile
from urllib.parse import urlsplit

import psutil
import pytest
from PIL import Image

from tests.conftest import production_api

API = "/api/image-queue"
#: Results of this many megapixels of noise: PNGs of about 12 MB each, which no codec makes smaller.
SIDE = 2000
RESULTS = 4
DOWNLOADS = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with production_api(tmp_path_factory.mktemp("zip"), queues="image-processing") as local:
        yield local


def noise_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (SIDE, SIDE), os.urandom(SIDE * SIDE * 3)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def download(api: str, key: str, path: str, keep: list | None = None) -> int:
    """GET ``path`` a chunk at a time; its length (the body kept in ``keep`` when given)."""
    parts = urlsplit(api)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request("GET", path, headers={"X-API-Key": key})
        response = conn.getresponse()
        assert response.status == 200, response.read()[:300]
        size = 0
        while chunk := response.read(64 * 1024):
            size += len(chunk)
            if keep is not None:
                keep.append(chunk)
        return size
    finally:
        conn.close()


def test_four_downloads_at_once_hold_no_result_in_memory(stack, photo_server):
    from imgproc.testing import wait_for

    key = stack.add_vendor("zipper")
    photo_server.serve("/noise.jpg", noise_jpeg())
    items = [{"record_id": f"n{i}", "image_url": photo_server.url("/noise.jpg")} for i in range(RESULTS)]
    with stack.client(key) as client:
        batch = client.bulk("process-image", items, format="png")
        states = lambda: [j["state"] for j in client.batch(batch.id).jobs]  # noqa: E731
        wait_for(lambda: states() == ["finished"] * RESULTS, 180, "the batch's jobs")
    results = sorted((stack.var / "media").rglob("*.png"))
    sizes = [p.stat().st_size for p in results]
    assert len(results) == RESULTS and min(sizes) > 5_000_000

    path = f"{API}/batch/{batch.id}/results.zip"
    body: list[bytes] = []
    download(stack.api, key, path, body)  # once alone: the zip as it comes, and the process warmed up
    with zipfile.ZipFile(io.BytesIO(b"".join(body))) as archive:
        assert archive.testzip() is None
        got = {name: archive.read(name) for name in archive.namelist()}
    assert sorted(got.values()) == sorted(p.read_bytes() for p in results)
    body.clear()

    (api,) = psutil.Process(stack.procs[0].pid).children()  # gunicorn's one worker process
    before = api.memory_info().rss
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], api.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    lengths: list[int] = []
    threads = [
        threading.Thread(target=lambda: lengths.append(download(stack.api, key, path)))
        for _ in range(DOWNLOADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    sampler.join()
    grown = peak[0] - before
    mib = 1024 * 1024
    print(
        f"\n{DOWNLOADS} downloads at once of a {sum(sizes) / mib:.0f} MiB zip ({RESULTS} results of "
        f"{max(sizes) / mib:.1f} MiB at most): API process {before / mib:.0f} MiB before, peak "
        f"{peak[0] / mib:.0f} MiB (+{grown / mib:.1f} MiB)"
    )
    assert len(lengths) == DOWNLOADS and len(set(lengths)) == 1 and lengths[0] > sum(sizes)
    # Each download held a result whole at least (three copies of it, before): now a chunk or two.
    assert grown < max(sizes)


def sign_in(client, key: str) -> None:
    page = client.get("/ui/")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', page.text).group(1)
    assert client.post("/ui/sign-in", data={"api_key": key, "sign_in_token": token}).status_code == 303


def test_a_signed_in_pages_download_counts_as_any_request(app, vendor_key, settings):
    key = vendor_key("acme")
    batch = app.test_client().post(
        f"{API}/bulk-process-image",
        json={"items": [{"record_id": "r1", "image_url": "http://127.0.0.1:9/p.jpg"}]},
        headers=key,
    )
    page = app.test_client()
    sign_in(page, key["X-API-Key"])
    global_left = lambda: page.get(f"{API}/limits").json["limits"]["global"]["remaining"]  # noqa: E731
    left = global_left()
    assert page.get(f"{API}/batch/{batch.json['batch_id']}/results.zip").status_code == 409  # none finished
    assert global_left() == left - 1


def test_a_zip_reads_a_remote_result_in_chunks_too(app, vendor_key, photo_server, monkeypatch):
    """A result stored elsewhere (Cloudinary) is read from its URL as it comes, not whole."""
    from imgproc.api import listings

    body = os.urandom(3 * listings.CHUNK + 5)
    photo_server.serve("/r.png", body)
    monkeypatch.setattr(listings, "CHUNK", 64 * 1024)
    with app.test_request_context():
        stream = listings.zip_stream([{"url": photo_server.url("/r.png")}])
        chunks = list(stream)
    assert max(len(c) for c in chunks) < 2 * 64 * 1024
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.read("r.png") == body
