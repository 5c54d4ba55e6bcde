"""Result URLs of local storage follow the API's address, as a new operator runs it (issue 21, item 3).

The API under gunicorn on a port of its own (not 8000), ``python worker.py``, ``IMGPROC_PUBLIC_URL``
unset: a result's URL is built from the request that reads it; ``X-Forwarded-*`` count only behind a
trusted proxy (``IMGPROC_TRUSTED_PROXIES``); ``IMGPROC_PUBLIC_URL`` wins when set. One face crop
(no background removal) is the only job; its worker's ISNet warm-up the only inference.
"""

from __future__ import annotations

import argparse
import io
import json
import re

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image
from rich.console import Console

from imgproc.client import Client
from imgproc.client.models import Job
from imgproc.testing import free_port
from imgproc.tools.cli import main
from imgproc.tools.submit import Submitter
from imgproc.tools.submit_display import Display
from imgproc.tools.submit_records import UPLOADS, Record
from tests.conftest import close_app, production_api

FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "imgproc.example.com",
    "X-Forwarded-Port": "443",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """gunicorn (production's configuration) on a free port and one face-crop worker, the URL unset."""
    # As a new operator starts the parts: neither setting in the environment.
    env = {"GUNICORN_CMD_ARGS": "--graceful-timeout 2"}
    unset = ("IMGPROC_PUBLIC_URL", "IMGPROC_TRUSTED_PROXIES")
    with production_api(tmp_path_factory.mktemp("urls"), env, 4, "face-crop", unset) as local:
        yield local


@pytest.fixture(scope="module")
def key(stack):
    return stack.add_vendor("urls")


@pytest.fixture(scope="module")
def finished(stack, key, photos, tmp_path_factory):
    """A finished face crop of an uploaded photo: its job id."""
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    path.write_bytes(photos["astronaut"])
    with Client(stack.api, key) as client:
        job = client.crop_face(path, record_id="astronaut").wait(timeout=120)
    assert job.state == "finished", job.error
    return job.id


def poll(stack, key, job_id, headers=None) -> dict:
    response = httpx.get(
        f"{stack.api}/api/image-queue/job/{job_id}", headers={"X-API-Key": key, **(headers or {})}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_result_url_is_on_the_port_the_api_answers_on(stack, key, finished):
    assert not stack.api.endswith(":8000")
    url = poll(stack, key, finished)["result"]["url"]
    assert url.startswith(f"{stack.api}/media/urls/{finished}/astronaut-"), url
    response = httpx.get(url)
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.format == "JPEG" and img.size[0] > 0


def test_the_listing_and_the_events_give_the_same_url(stack, key, finished):
    url = poll(stack, key, finished)["result"]["url"]
    listed = httpx.get(f"{stack.api}/api/image-queue/jobs", headers={"X-API-Key": key}).json()["jobs"]
    assert [j["result"]["url"] for j in listed if j["job_id"] == finished] == [url]
    events = f"{stack.api}/api/image-queue/job/{finished}/events"
    # From the start of its stream (Last-Event-ID 0-0): the worker's own events, the last one finished.
    answer = httpx.get(events, headers={"X-API-Key": key, "Last-Event-ID": "0-0"}, timeout=30)
    last = json.loads([line for line in answer.text.splitlines() if line.startswith("data: ")][-1][6:])
    assert last["state"] == "finished" and last["result"]["url"] == url


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(stack, key, finished):
    url = poll(stack, key, finished, FORWARDED)["result"]["url"]
    assert url.startswith(f"{stack.api}/media/"), url


def _poll_in_process(stack, key, job_id, headers, **settings) -> str:
    """The result URL as an API of these settings (on the stack's Redis and database) answers it."""
    from imgproc.api import create_app

    app = create_app(stack.settings().replace(**settings))
    try:
        response = app.test_client().get(
            f"/api/image-queue/job/{job_id}", headers={"X-API-Key": key, **headers}
        )
        assert response.status_code == 200, response.json
        return response.json["result"]["url"]
    finally:
        close_app(app)


def test_a_trusted_proxy_names_the_address(stack, key, finished):
    url = _poll_in_process(stack, key, finished, FORWARDED, trusted_proxies=1)
    assert url.startswith(f"https://imgproc.example.com/media/urls/{finished}/"), url


def test_the_public_url_setting_wins(stack, key, finished):
    base = "https://cdn.example.org/imgproc"
    assert _poll_in_process(stack, key, finished, FORWARDED, trusted_proxies=1, public_url=base).startswith(
        f"{base}/media/urls/{finished}/"
    )
    assert _poll_in_process(stack, key, finished, {}, public_url=base + "/").startswith(f"{base}/media/")


def test_the_worker_stores_a_relative_url_and_says_what_to_set(stack, finished):
    engine = sa.create_engine(stack.settings().database_url)
    try:
        with engine.connect() as conn:
            (url,) = conn.execute(
                sa.text("SELECT face_crop_url FROM records WHERE record_id = 'astronaut'")
            ).one()
    finally:
        engine.dispose()
    # No request in a worker: without IMGPROC_PUBLIC_URL the records row holds the API-relative URL.
    assert re.fullmatch(rf"/media/urls/{finished}/astronaut-face\.jpg", url), url
    logs = "".join(p.read_text() for p in stack.var.glob("worker-*.log"))
    assert "IMGPROC_PUBLIC_URL is not set" in logs


def test_submit_saves_the_results_of_an_api_on_another_port(stack, key, photos, tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jpg").write_bytes(photos["astronaut"])
    out = tmp_path / "out"
    code = main(
        ["submit", "crop-face", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "--out", str(out)]
        + ["--api-url", stack.api, "--api-key", key]
    )
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg"]
    with Image.open(out / "a.jpg") as img:
        assert img.format == "JPEG"


def test_a_failed_download_names_the_url_and_the_setting(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/media/v/j/a-face.jpg"
    args = argparse.Namespace(operation="crop-face", out=tmp_path, api_url="http://127.0.0.1:1", timeout=5)
    display = Display(Console(file=io.StringIO()))
    display.add(UPLOADS, 1)
    submitter = Submitter(None, args, {}, display)
    record = Record("a", "a.jpg", False, "a")
    result = {"url": dead, "width": 1, "height": 1, "format": "jpg", "bytes": 1}
    job = Job.of({"job_id": "j", "state": "finished", "result": result})
    try:
        submitter.finish(record, job, UPLOADS)
    finally:
        submitter.close()
    assert record.state == "failed"
    assert record.error.startswith(f"download_failed: {dead}: "), record.error
    assert "IMGPROC_PUBLIC_URL" in record.error


def test_the_client_resolves_a_relative_result_url_against_its_api():
    def answer(request: httpx.Request) -> httpx.Response:
        result = {"url": "/media/v/j/a-face.jpg", "width": 1, "height": 1, "format": "jpg", "bytes": 1}
        return httpx.Response(200, json={"job_id": "j", "state": "finished", "result": result})

    with Client("http://api.example:9000/", "k", transport=httpx.MockTransport(answer)) as client:
        assert client.job("j").result.url == "http://api.example:9000/media/v/j/a-face.jpg"
