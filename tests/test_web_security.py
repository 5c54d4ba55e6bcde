"""The web page's security without a browser: sign-in, cookie flags, CSRF, CSP, another vendor's jobs."""

from __future__ import annotations

import re

import pytest
from limits import parse

API = "/api/image-queue"
URL = "http://127.0.0.1:9/photo.jpg"  # never fetched: no worker runs here


def sign_in(client, key: str):
    page = client.get("/ui/")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', page.text).group(1)
    return client.post("/ui/sign-in", data={"api_key": key, "sign_in_token": token})


def csrf_of(client) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/ui/").text).group(1)


@pytest.fixture
def acme(app, vendor_key):
    """A test client signed in as vendor acme: (client, key, csrf token)."""
    key = vendor_key("acme")["X-API-Key"]
    client = app.test_client()
    assert sign_in(client, key).status_code == 303
    return client, key, csrf_of(client)


def test_root_redirects_to_the_page_and_the_key_never_reaches_html_url_or_cookie(app, vendor_key):
    key = vendor_key("acme")["X-API-Key"]
    client = app.test_client()
    assert client.get("/").headers["Location"].endswith("/ui/")
    signed = sign_in(client, key)
    assert signed.status_code == 303 and key not in signed.headers["Location"]
    cookies = signed.headers.getlist("Set-Cookie")
    session = next(c for c in cookies if c.startswith("imgproc_session="))
    assert "HttpOnly" in session and "SameSite=Strict" in session and key not in session
    for path in ("/ui/", "/ui/operator"):
        assert key not in client.get(path).text
    assert "Signed in as <strong>acme</strong>" in client.get("/ui/").text


def test_a_wrong_key_or_a_form_without_its_token_signs_nobody_in(app, vendor_key):
    vendor_key("acme")
    client = app.test_client()
    wrong = sign_in(client, "ik_not-a-key")
    assert wrong.status_code == 401 and "not known" in wrong.text and "ik_not-a-key" not in wrong.text
    assert not any(c.startswith("imgproc_session=") for c in wrong.headers.getlist("Set-Cookie"))
    forged = app.test_client().post("/ui/sign-in", data={"api_key": "ik_x", "sign_in_token": "forged"})
    assert forged.status_code == 400
    assert client.get(f"{API}/jobs").status_code == 401


def test_state_changes_need_the_csrf_token(acme):
    client, _, csrf = acme
    body = {"record_id": "r1", "image_url": URL}
    refused = client.post(f"{API}/process-image-queue", json=body)
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "forbidden" and "CSRF" in refused.json["error"]["message"]
    wrong = client.post(f"{API}/process-image-queue", json=body, headers={"X-CSRF-Token": "x" + csrf})
    assert wrong.status_code == 403
    accepted = client.post(f"{API}/process-image-queue", json=body, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 202
    assert client.delete(f"{API}/job/{accepted.json['job_id']}").status_code == 403
    assert (
        client.delete(f"{API}/job/{accepted.json['job_id']}", headers={"X-CSRF-Token": csrf}).status_code
        == 200
    )
    assert client.post("/ui/sign-out").status_code == 403  # signing out is a change too


def test_pages_have_a_strict_csp_and_no_inline_script(acme):
    client, _, _ = acme
    for path in ("/ui/", "/ui/operator"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert (
            response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
        )
        html = response.text
        # Scripts come from files; a JSON block (the job types) is data that no browser runs.
        scripts = re.findall(r"<script[^>]*>", html)
        assert all("src=" in tag or 'type="application/json"' in tag for tag in scripts), "an inline script"
        assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
        assert "style=" not in html


def test_another_vendors_jobs_look_missing(app, acme, vendor_key):
    client, _, csrf = acme
    mine = client.post(
        f"{API}/process-image-queue",
        json={"record_id": "mine", "image_url": URL},
        headers={"X-CSRF-Token": csrf},
    ).json["job_id"]
    other = app.test_client()
    sign_in(other, vendor_key("globex")["X-API-Key"])
    other_csrf = csrf_of(other)
    assert other.get(f"{API}/job/{mine}").status_code == 404
    assert other.get(f"{API}/job/{mine}/events").status_code == 404
    retry = other.post(f"{API}/job/{mine}/retry", headers={"X-CSRF-Token": other_csrf})
    assert retry.status_code == 404 and retry.json["error"]["code"] == "not_found"
    assert other.get(f"{API}/jobs").json["total"] == 0
    assert [j["record_id"] for j in client.get(f"{API}/jobs").json["jobs"]] == ["mine"]


def test_a_signed_out_session_is_gone(acme):
    client, _, csrf = acme
    assert client.post("/ui/sign-out", data={"csrf_token": csrf}).status_code == 303
    assert client.get(f"{API}/jobs").status_code == 401
    assert 'name="api_key"' in client.get("/ui/").text


def test_operator_routes_are_for_operators(app, acme, vendor_key):
    client, _, csrf = acme
    for method, path in (
        ("GET", "/failed"),
        ("GET", "/workers"),
        ("GET", "/usage"),
        ("POST", "/failed/retry"),
    ):
        answer = client.open(API + path, method=method, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 403 and answer.json["error"]["code"] == "forbidden", path
    assert client.get("/ui/operator").status_code == 403
    ops = vendor_key("ops", operator=True)
    assert app.test_client().get(f"{API}/workers", headers=ops).json == {"workers": []}
    usage = app.test_client().get(f"{API}/usage?days=2", headers=ops).json["days"]
    assert len(usage) == 2 and usage[0]["vendors"] == {}


def test_jobs_are_listed_newest_first_page_by_page_and_counted_per_day(app, vendor_key):
    headers = vendor_key("acme")
    client = app.test_client()
    for i in range(5):
        body = {"record_id": f"r{i}", "image_url": URL}
        assert client.post(f"{API}/process-image-queue", json=body, headers=headers).status_code == 202
    first = client.get(f"{API}/jobs?per_page=2", headers=headers).json
    assert [j["record_id"] for j in first["jobs"]] == ["r4", "r3"]
    assert (first["total"], first["pages"]) == (5, 3)
    assert first["jobs"][0]["image_url"] == URL and first["jobs"][0]["state"] == "queued"
    last = client.get(f"{API}/jobs?per_page=2&page=3", headers=headers).json
    assert [j["record_id"] for j in last["jobs"]] == ["r0"]
    assert client.get(f"{API}/jobs?page=x", headers=headers).json["error"]["code"] == "invalid_request"
    job_id = first["jobs"][0]["job_id"]
    conflict = client.post(f"{API}/job/{job_id}/retry", headers=headers)
    assert conflict.status_code == 409 and "not failed" in conflict.json["error"]["message"]
    ops = vendor_key("ops", operator=True)
    today = client.get(f"{API}/usage?days=1", headers=ops).json["days"][0]
    assert today["vendors"]["acme"] == {"jobs": 5, "megapixels": 0, "limited": 0}


def test_the_page_reads_do_not_use_up_the_request_limit(app, acme, settings):
    client, _, _ = acme
    for _ in range(5):
        assert client.get(f"{API}/jobs").status_code == 200
    limits = client.get(f"{API}/limits").json["limits"]
    assert limits["global"]["remaining"] == limits["global"]["amount"]
    assert limits["image"]["limit"] == str(parse(settings.limit_image))


def test_rotating_the_key_ends_its_sessions(app, acme):
    client, _, _ = acme
    vendors = app.extensions["imgproc"].vendors
    vendors.rotate("acme")
    vendors._seen.clear()  # the API's 5-second cache of keys, as if 5 seconds had passed
    assert client.get(f"{API}/jobs").status_code == 401
    assert 'name="api_key"' in client.get("/ui/").text


def test_usage_counts_the_requests_a_limit_refused(settings, redis_conn):
    from imgproc.api import create_app
    from tests.conftest import close_app

    app = create_app(settings.replace(limit_image="1 per minute"))
    try:
        client = app.test_client()
        vendors = app.extensions["imgproc"].vendors
        headers, ops = {"X-API-Key": vendors.add("acme")}, {"X-API-Key": vendors.add("ops", operator=True)}
        body = {"record_id": "r", "image_url": URL}
        statuses = [
            client.post(f"{API}/process-image-queue", json=body, headers=headers).status_code
            for _ in range(3)
        ]
        assert statuses == [202, 429, 429]
        today = client.get(f"{API}/usage?days=1", headers=ops).json["days"][0]
        assert today["vendors"]["acme"] == {"jobs": 1, "megapixels": 0, "limited": 2}
        left = client.get(f"{API}/limits", headers=headers).json["limits"]["image"]
        assert left["remaining"] == 0 and 0 < left["reset_in"] <= 60
    finally:
        close_app(app)


def test_the_batch_page_escapes_what_vendors_wrote(acme):
    client, _, csrf = acme
    hostile = "<img src=x onerror=alert(1)>"
    items = [{"record_id": hostile, "image_url": URL}, {"record_id": "plain", "image_url": URL}]
    batch = client.post(
        f"{API}/bulk-process-image", json={"items": items}, headers={"X-CSRF-Token": csrf}
    ).json
    html = client.get(f"/ui/batch/{batch['batch_id']}").text
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and hostile not in html
    assert client.get("/ui/batch/b_nope").status_code == 404


def test_every_answer_says_nosniff_and_no_redirect_follows_the_host(app, client, vendor_key, settings):
    """Issue 22 finding 14: results and JSON could be sniffed; Host: evil.example redirected there."""
    from pathlib import Path

    key = vendor_key("acme")
    result = Path(settings.storage_dir) / "acme" / "j1" / "r1-img.jpg"
    result.parent.mkdir(parents=True)
    result.write_bytes(b"<html><script>alert(1)</script></html>")  # what a sniffing browser would run
    answers = {
        "/health": client.get("/health"),
        "/metrics": client.get("/metrics"),
        "/media/": client.get("/media/acme/j1/r1-img.jpg"),
        "404": client.get("/media/acme/nothing.jpg"),
        "401": client.get(f"{API}/queue-stats"),
        "queue-stats": client.get(f"{API}/queue-stats", headers=key),
        "405": client.open("/health", method="ZQAAAA"),
        "/ui/": client.get("/ui/"),
    }
    assert answers["/media/"].status_code == 200
    for name, answer in answers.items():
        answer.close()  # the file of /media/
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", name
    for path in ("/ui", "/"):
        answer = client.get(path, headers={"Host": "evil.example"})
        assert answer.status_code in (301, 302, 308) and answer.headers["Location"] == "/ui/", answer.headers
