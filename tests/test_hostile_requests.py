"""Hostile requests are 400s naming what was wrong, never a 500 or a stream that dies (issue 22 finding 12).

Lone surrogates in ids: tests/test_identifiers.py.
"""

from __future__ import annotations

from tests.test_web_security import acme  # noqa: F401 (a fixture)

API = "/api/image-queue"
URL = "http://127.0.0.1:9/photo.jpg"  # never fetched: no worker runs here


def refused(answer, field: str) -> dict:
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and error["code"] == "invalid_request", (answer.status_code, error)
    assert field in error["message"] and error["details"] == {"field": field}, error
    return error


def test_a_json_body_nested_too_deeply(client, vendor_key):
    """100,000 '[' raised RecursionError in the JSON parser: a 500."""
    key = vendor_key("acme")
    answer = client.post(
        f"{API}/process-image-queue", data="[" * 100_000, content_type="application/json", headers=key
    )
    refused(answer, "body")
    options = {"record_id": "r", "image_url": URL, "options": "[" * 100_000}
    answer = client.post(
        f"{API}/process-image-queue", data=options, content_type="multipart/form-data", headers=key
    )
    refused(answer, "options")


def test_a_csrf_token_that_is_not_ascii(acme):  # noqa: F811
    """hmac.compare_digest refuses non-ASCII text with TypeError: a 500."""
    client, _, csrf = acme
    body = {"record_id": "r1", "image_url": URL}
    answer = client.post(f"{API}/process-image-queue", json=body, headers={"X-CSRF-Token": csrf[:-1] + "é"})
    refused(answer, "X-CSRF-Token")
    answer = client.post("/ui/sign-out", data={"csrf_token": "é"})
    assert answer.status_code in (400, 403) and answer.status_code != 500


def test_a_page_past_any_list(client, vendor_key):
    """page=10**18 made Redis refuse the range: reported as '503 Redis unavailable'."""
    key = vendor_key("acme")
    refused(client.get(f"{API}/jobs?page={10**18}", headers=key), "page")
    refused(client.get(f"{API}/jobs?per_page={10**18}", headers=key), "per_page")
    assert client.get(f"{API}/jobs?page=1000000", headers=key).get_json()["jobs"] == []


def test_a_last_event_id_redis_cannot_read(client, vendor_key):
    """99999999999999999999-0 passed the id's pattern and Redis refused it after the stream began."""
    key = vendor_key("acme")
    job = client.post(f"{API}/process-image-queue", json={"record_id": "r", "image_url": URL}, headers=key)
    events = f"{API}/job/{job.get_json()['job_id']}/events"
    for bad in ("99999999999999999999-0", "0-18446744073709551616", "not-an-id"):
        refused(client.get(events, headers={**key, "Last-Event-ID": bad}), "Last-Event-ID")
