"""The Python client: against the real stack (gunicorn, Redis, a worker); its retries on a MockTransport."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import httpx
import pytest
from standardwebhooks import Webhook

from imgproc.client import (
    Client,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    Unauthorized,
    Unavailable,
    WebhookVerificationError,
    verify_webhook,
)
from imgproc.client.client import record_ids
from imgproc.config import ROOT


def test_the_client_needs_none_of_the_workers_libraries():
    code = (
        "import sys, imgproc.client; heavy = {'onnxruntime', 'cv2', 'mediapipe', 'numpy', 'rq', 'flask', "
        "'redis', 'sqlalchemy', 'PIL'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    """gunicorn (gthread, as in production) and one light worker on an embedded Redis."""
    from imgproc.testing import LocalStack, PhotoServer, local_env, sample_photos

    var = tmp_path_factory.mktemp("client")
    env = local_env(var)
    photos = sample_photos()
    server = PhotoServer(lambda path: photos.get(path.strip("/").removesuffix(".jpg")), keep_alive=True)
    saved = os.environ.pop("REDIS_URL", None)
    try:
        with LocalStack(var / "var", env) as local:
            local.callback(server.close)
            local.start_api(processes=1, threads=8, config=str(ROOT / "deploy" / "gunicorn.conf.py"))
            local.wait_workers(local.start_workers(1, "image-processing"))
            yield {
                "stack": local,
                "key": local.add_vendor("acme"),
                "photo": server.url("/coffee.jpg"),
                "coffee": photos["coffee"],
                "missing": server.url("/nothing.jpg"),
            }
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved


@pytest.fixture
def client(stack):
    with Client(stack["stack"].api, stack["key"]) as c:
        yield c


def test_a_job_followed_to_its_end_on_its_event_stream(client, stack, tmp_path):
    job = client.process_image(stack["photo"], record_id="emp-1", resize=[40, 30], format="png")
    assert job.state in ("queued", "started", "finished") and job.record_id == "emp-1"
    seen = []
    done = job.wait(timeout=30, progress=lambda j: seen.append(j))
    assert done.state == "finished" and done.result.width == 40 and done.result.format == "png"
    assert done.result.url.endswith("-img.png") and done.result.duration_ms >= 0
    progress = [(j.state, j.progress) for j in seen]
    assert [p for _, p in progress] == sorted(p for _, p in progress) and progress[-1] == ("finished", 100)
    # Each status once: the stream's first event repeats the status the job came with (it was seen twice).
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False)), progress

    path = tmp_path / "coffee.jpg"
    path.write_bytes(stack["coffee"])
    uploaded = client.process_image(path, record_id="emp-2", resize=[20, 20]).wait(timeout=30)
    # "contain": the 600x400 photo fits 20x20 at 20x13
    assert uploaded.state == "finished" and (uploaded.result.width, uploaded.result.height) == (20, 13)

    with pytest.raises(Conflict) as caught:
        client.cancel(done.id)
    assert caught.value.code == "conflict" and caught.value.status == 409


def test_a_bulk_with_progress_and_a_failed_job(client, stack):
    batch = client.bulk("process-image", [stack["photo"], stack["photo"], stack["missing"]], resize=[16, 16])
    assert batch.total == 3
    seen = []
    final = batch.wait(timeout=60, progress=lambda b: seen.append(b))
    assert final.counts["finished"] == 2 and final.counts["failed"] == 1 and final.ended
    done = [b.done for b in seen]
    assert done == sorted(done) and done[-1] == 3
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False)), done  # each status once
    # Record ids from the URLs' file names; the second coffee.jpg adds its position.
    jobs = {j.record_id: j for j in final.results()}
    assert jobs["nothing"].error.code == "fetch_failed" and jobs["coffee"].result.width == 16
    assert jobs["coffee-1"].result.width == 16
    assert client.stats()["vendors"]["acme"]["finished"] >= 2
    limits = client.limits()  # local_env's: none in the way
    assert set(limits) == {"global", "image", "bulk", "bg-removal", "session-reads"}
    assert limits["bulk"]["amount"] == 1_000_000


def test_api_errors_are_typed(client, stack):
    with pytest.raises(InvalidRequest) as caught:
        client.process_image(stack["photo"], record_id="x", fit="stretch")
    assert caught.value.code == "invalid_options" and caught.value.details["option"] == "fit"
    with pytest.raises(NotFound) as missing:
        client.job("0123456789abcdef")
    assert missing.value.code == "not_found"
    with Client(stack["stack"].api, "ik_wrong") as stranger, pytest.raises(Unauthorized):
        stranger.stats()


def _mock(handler) -> Client:
    return Client("http://imgproc.test", "ik_test", transport=httpx.MockTransport(handler), backoff=0.001)


JOB = {"job_id": "j1", "state": "queued", "type": "process-image", "record_id": "r1"}


def test_429_and_503_are_retried_with_one_idempotency_key(monkeypatch):
    slept, keys = [], []
    monkeypatch.setattr("imgproc.client.client.time.sleep", slept.append)
    answers = iter(
        [
            httpx.Response(503, json={"error": {"code": "unavailable", "message": "redis"}}),
            httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={"error": {"code": "rate_limited", "message": "slow down"}},
            ),
            httpx.Response(202, json={"job_id": "j1", "state": "queued"}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            keys.append(json.loads(request.content)["idempotency_key"])
            return next(answers)
        return httpx.Response(200, json=JOB)

    job = _mock(handler).process_image("https://photos.example/a.jpg", record_id="r1")
    assert job.id == "j1" and len(keys) == 3 and len(set(keys)) == 1
    assert slept[1] == 7.0 and 0 < slept[0] < 1  # Retry-After honoured; otherwise backoff with jitter


def test_a_bulk_is_not_sent_twice_when_its_answer_is_lost():
    posts = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(ConnectionFailed):
        _mock(handler).bulk("process-image", ["https://photos.example/a.jpg"])
    assert len(posts) == 1  # it may have been enqueued: a retry could make it twice

    def down(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(503, json={"error": {"code": "unavailable", "message": "redis"}})

    posts.clear()
    with pytest.raises(Unavailable):
        _mock(down).bulk("process-image", ["https://photos.example/a.jpg"])
    assert len(posts) == 4  # nothing was enqueued: retried (3 retries)


def test_an_enqueue_whose_status_cannot_be_read_is_not_an_error(monkeypatch):
    """A 503 on the GET after an accepted enqueue: the answer is the job (or batch) as accepted, sent once."""
    monkeypatch.setattr("imgproc.client.client.time.sleep", lambda s: None)
    posts = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("bulk-process-image"):
            posts.append(request)
            return httpx.Response(202, json={"batch_id": "b_1", "job_ids": ["j1", "j2"], "status_url": "/b"})
        if request.method == "POST":
            posts.append(request)
            return httpx.Response(202, json={"job_id": "j9", "state": "queued", "status_url": "/j"})
        return httpx.Response(503, json={"error": {"code": "unavailable", "message": "redis"}})

    client = _mock(handler)
    batch = client.bulk("process-image", ["https://photos.example/a.jpg", "https://photos.example/b.jpg"])
    assert batch.id == "b_1" and batch.job_ids == ["j1", "j2"] and batch.total == 2 and not batch.ended
    assert [j["record_id"] for j in batch.jobs] == ["a", "b"] and len(posts) == 1
    job = client.process_image("https://photos.example/a.jpg", record_id="r9")
    assert (job.id, job.state, job.record_id, job.type) == ("j9", "queued", "r9", "process-image")
    assert len(posts) == 2


def test_a_bulks_record_ids_are_the_urls_file_names():
    urls = [
        "https://cdn.example.com/photos/0042.jpg?size=large",
        "https://cdn.example.com/other/0042.jpg",
        "https://cdn.example.com/",
        "https://cdn.example.com/x/",
        "https://cdn.example.com/caf%C3%A9.png",
        "https://cdn.example.com/" + "a" * 300 + ".jpg",
        "https://cdn.example.com/0042-1.jpg",
    ]
    ids = list(record_ids(urls))
    assert ids[:5] == ["0042", "0042-1", "photo", "x", "café"] and ids[5] == "a" * 160
    assert ids[6] == "0042-1-6" and len(set(ids)) == len(ids)


def test_wait_calls_progress_only_when_the_status_changed(monkeypatch):
    """Polled statuses that repeat (and the first event, the status the job came with) are not passed on."""
    monkeypatch.setattr("imgproc.client.models.time.sleep", lambda s: None)
    states = iter(["queued", "queued", "started", "started", "started", "finished"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(502, text="bad gateway")
        state = next(states)
        result = {"url": "u", "width": 1, "height": 1, "format": "jpg", "bytes": 9}
        return httpx.Response(
            200, json={**JOB, "state": state, "result": result if state == "finished" else None}
        )

    client = _mock(handler)
    seen = []
    job = client.job("j1").wait(timeout=10, progress=lambda j: seen.append(j.state))
    assert job.state == "finished" and seen == ["queued", "started", "finished"]


def test_wait_polls_when_the_event_stream_fails(monkeypatch):
    monkeypatch.setattr("imgproc.client.models.time.sleep", lambda s: None)
    polls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(502, text="bad gateway")  # a proxy that cannot stream
        polls.append(1)
        state = "finished" if len(polls) >= 3 else "started"
        return httpx.Response(
            200,
            json={
                **JOB,
                "state": state,
                "result": {"url": "u", "width": 1, "height": 1, "format": "jpg", "bytes": 9}
                if state == "finished"
                else None,
            },
        )

    client = _mock(handler)
    job = client.job("j1").wait(timeout=10)
    assert job.state == "finished" and job.result.bytes == 9 and len(polls) == 3


def test_verify_webhook():
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = json.dumps({"type": "job.finished", "data": {"job_id": "j1"}})
    now = dt.datetime.now(dt.UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": "v1,bm90IGl0 " + Webhook(secret).sign("msg_1", now, body),
    }
    assert verify_webhook(secret, headers, body)["data"]["job_id"] == "j1"
    with pytest.raises(WebhookVerificationError):
        verify_webhook("whsec_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", headers, body)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, body + " ")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
    stale = {
        **headers,
        "webhook-timestamp": str(int(old.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", old, body),
    }
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verify_webhook(secret, stale, body)


def test_a_job_carries_its_writeback_state():
    from imgproc.client import Job

    job = Job.of({"job_id": "j1", "state": "finished", "writeback": {"state": "not_found"}})
    assert job.writeback == {"state": "not_found"}
    assert Job.of({"job_id": "j2", "state": "queued"}).writeback is None


def test_the_clients_job_types_are_written_from_the_table():
    """imgproc/client/jobtypes.py is what ``python -m imgproc.clientgen`` writes from the table now."""
    from imgproc import clientgen
    from imgproc.client import jobtypes
    from imgproc.client.client import ENDPOINTS
    from imgproc.jobtypes import JOB_TYPES

    assert clientgen.TARGET.read_text() == clientgen.source(), "out of date: run python -m imgproc.clientgen"
    assert ENDPOINTS == {jt.name: (jt.single_endpoint, jt.bulk_endpoint) for jt in JOB_TYPES.values()}
    assert [jobtypes.REMOVE_BG, jobtypes.CROP_FACE, jobtypes.PROCESS_IMAGE] == list(JOB_TYPES)


def test_a_table_changed_without_writing_the_clients_copy_again_is_caught(tmp_path, monkeypatch, capsys):
    import dataclasses

    from imgproc import clientgen
    from imgproc.jobtypes import JOB_TYPES

    target = tmp_path / "jobtypes.py"
    target.write_text(clientgen.TARGET.read_text())  # today's module
    monkeypatch.setattr(clientgen, "TARGET", target)
    assert clientgen.main(["--check"]) == 0
    blur = dataclasses.replace(
        JOB_TYPES["process-image"], name="blur", single_endpoint="blur-queue", bulk_endpoint="bulk-blur"
    )
    monkeypatch.setitem(JOB_TYPES, "blur", blur)  # a job type added, the module not written again
    assert clientgen.main(["--check"]) == 1 and "run python -m imgproc.clientgen" in capsys.readouterr().err
    assert clientgen.main([]) == 0 and clientgen.main(["--check"]) == 0
    written: dict = {}
    exec(target.read_text(), written)
    assert written["BLUR"] == "blur" and written["ENDPOINTS"]["blur"] == ("blur-queue", "bulk-blur")
