"""A signed-in page's reads count under a limit of their own (issue 22, finding 9).

Against gunicorn as in production (``deploy/gunicorn.conf.py``, one process) on an embedded Redis: a
script with a vendor's session cookie reads ``/jobs?per_page=100`` from 8 connections at once while
another vendor reads its own jobs.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import statistics
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import production_api

API = "/api/image-queue"
LIMIT = 100
#: Closed-loop clients of the script, each for ``SECONDS`` (and at most ``EACH`` requests).
CLIENTS, EACH, SECONDS = 8, 400, 5.0
URL = "http://127.0.0.1:9/p.jpg"  # never fetched: no worker runs


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = {"IMGPROC_LIMIT_SESSION_READS": f"{LIMIT} per minute"}
    with production_api(tmp_path_factory.mktemp("page"), env, threads=16) as local:
        yield local


def session_cookie(api: str, key: str) -> str:
    """Sign in as a browser does; the session cookie's value."""
    with httpx.Client(base_url=api) as browser:
        token = re.search(r'name="sign_in_token" value="([^"]+)"', browser.get("/ui/").text).group(1)
        answer = browser.post("/ui/sign-in", data={"api_key": key, "sign_in_token": token})
        assert answer.status_code == 303
        return browser.cookies["imgproc_session"]


def reads(
    api: str, headers: dict, path: str, n: int, until: float = math.inf, pause: float = 0
) -> list[tuple[int, float, dict]]:
    """At most ``n`` GETs of ``path`` on one connection, until ``until``: (status, ms, answer) each."""
    parts = urlsplit(api)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    found = []
    try:
        for _ in range(n):
            if time.monotonic() > until:
                break
            time.sleep(pause)
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            found.append((response.status, (time.perf_counter() - started) * 1000, json.loads(body)))
    finally:
        conn.close()
    return found


def test_a_scripted_session_meets_its_own_limit_and_another_vendor_is_answered(stack):
    page_key, other_key = stack.add_vendor("page"), stack.add_vendor("other")
    # Plain POSTs, not the Client's (which reads each enqueue back): the limits below count requests.
    with stack.http(page_key) as owner, stack.http(other_key) as other:
        items = [{"record_id": f"r{i}", "image_url": URL} for i in range(100)]
        assert owner.post(f"{API}/bulk-process-image", json={"items": items}).status_code == 202
        assert (
            other.post(f"{API}/process-image-queue", json={"record_id": "mine", "image_url": URL}).status_code
            == 202
        )
    cookie = {"Cookie": f"imgproc_session={session_cookie(stack.api, page_key)}"}
    own = {"X-API-Key": other_key}
    quiet = [ms for _, ms, _ in reads(stack.api, own, f"{API}/jobs", 30)]

    found: list[list] = [[] for _ in range(CLIENTS)]

    until = time.monotonic() + SECONDS

    def script(i: int) -> None:
        found[i] = reads(stack.api, cookie, f"{API}/jobs?per_page=100", EACH, until)

    scripts = [threading.Thread(target=script, args=(i,)) for i in range(CLIENTS)]
    for t in scripts:
        t.start()
    busy = reads(stack.api, own, f"{API}/jobs", 100, until, pause=0.05)  # the whole time, spaced
    for t in scripts:
        t.join(120)
    answers = [a for per_client in found for a in per_client]
    statuses = [status for status, _, _ in answers]
    print(
        f"\n{CLIENTS} clients with a session cookie on /jobs?per_page=100 for {SECONDS:g} s: "
        f"{statuses.count(200)} answered 200, {statuses.count(429)} 429; another vendor's GET /jobs median "
        f"{statistics.median(ms for _, ms, _ in busy):.1f} ms ({statistics.median(quiet):.1f} ms alone)"
    )
    assert statuses.count(200) == LIMIT and statuses.count(429) == len(statuses) - LIMIT
    refusal = next(body for status, _, body in answers if status == 429)["error"]
    assert refusal["code"] == "rate_limited" and refusal["message"].startswith("session-reads limit")
    assert {status for status, _, _ in busy} == {200}
    # The page's reads never used up the vendor's requests: its own key still has them all.
    limits = reads(stack.api, {"X-API-Key": page_key}, f"{API}/limits", 1)[0][2]["limits"]
    assert limits["session-reads"]["remaining"] == 0
    assert limits["global"]["remaining"] == limits["global"]["amount"] - 2  # the bulk and this read
