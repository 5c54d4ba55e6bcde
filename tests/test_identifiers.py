"""Record ids and idempotency keys with control characters: refused at enqueue, escaped where shown."""

import logging

import pytest
from rq.job import Job

from imgproc.jobtypes import Payload
from imgproc.queueing import JobQueue, NewJob
from tests.test_cli import LIGHT, rows

SINGLE = "/api/image-queue/process-image-queue"
BULK = "/api/image-queue/bulk-process-image"
#: A newline that forges a log line, then an OSC sequence that sets the terminal's title, then red.
HOSTILE = "r1\n12:00:00 Worker w1: image-processing: forged\x1b]0;pwned\x07\x1b[31m"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"record_id": "a\nb"}, "record_id"),
        ({"record_id": HOSTILE}, "record_id"),
        ({"record_id": "a\u2028b"}, "record_id"),
        ({"record_id": "a", "idempotency_key": "k\x1b[2J"}, "idempotency_key"),
        ({"record_id": "a", "idempotency_key": "k\x00"}, "idempotency_key"),
        # Finding 12: a lone surrogate (JSON's "\ud800") cannot be encoded for Redis: it was a 500.
        ({"record_id": "a\ud800"}, "record_id"),
        ({"record_id": "a", "idempotency_key": "\udfff"}, "idempotency_key"),
    ],
)
def test_control_characters_in_ids_are_refused_at_enqueue(client, vendor_key, body, field):
    answer = client.post(
        SINGLE, json={"image_url": "https://example.com/a.jpg", **body}, headers=vendor_key("acme")
    )
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and error["code"] == "invalid_request", error
    assert error["message"].startswith(f"{field} must "), error
    assert "control characters" in error["message"] or "lone surrogate" in error["message"]
    assert error["details"] == {"field": field}


def test_a_bulk_item_with_a_control_character_is_refused_whole(client, vendor_key, redis_conn):
    items = [{"record_id": "ok", "image_url": "https://example.com/a.jpg"}]
    items.append({"record_id": "x\r\nforged", "image_url": "https://example.com/b.jpg"})
    answer = client.post(BULK, json={"items": items}, headers=vendor_key("acme"))
    error = answer.get_json()["error"]
    assert answer.status_code == 400, error
    assert error["message"].startswith("items[1]: record_id must not hold control characters"), error
    assert not redis_conn.keys("rq:job:*")  # all or nothing


def test_ids_stored_before_are_escaped_in_the_worker_log_and_the_cli_table(
    cli,  # noqa: F811
    settings,
    redis_conn,
    photo_server,
    work,
    caplog,
):
    """Issue 22 finding 10: an id stored before the API refused it is one escaped line in logs and tables."""
    photo_server.serve("/photo.jpg", b"not an image")
    payload = Payload("acme", "process-image", HOSTILE, dict(LIGHT), image_url=photo_server.url("/photo.jpg"))
    (job,) = JobQueue(redis_conn, settings).enqueue([NewJob(payload)])[1]
    caplog.set_level(logging.INFO, logger="rq.worker")
    work()
    assert Job.fetch(job.id, connection=redis_conn).get_status() == "failed"
    (line,) = [r.getMessage() for r in caplog.records if "process-image acme/" in r.getMessage()]
    print("worker log:", line)
    assert not any(c in line for c in "\n\x1b\x07") and "forged\\x1b]0;pwned\\x07" in line

    code, out, _ = cli("jobs", "failed")
    print(out)
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    header, row = rows(out)
    assert row[0] == job.id and row[3].startswith("r1\\n12:00:00 Worker w1")
