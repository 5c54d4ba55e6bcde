"""/metrics: exact counts across two API processes and two worker processes, checked by promtool too."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from imgproc.testing import LocalStack, local_env, wait_for
from tests.test_prometheus_rules import METRIC_NAMES

API = "/api/image-queue"


def scrape(base: str) -> tuple[str, dict[tuple[str, tuple], float]]:
    """The /metrics text (no key) and its samples by (name, sorted labels)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
        text = response.read().decode()
    finally:
        conn.close()
    return text, samples_of(text)


def samples_of(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.timeout(240)
def test_counts_equal_what_ran_across_two_api_and_two_worker_processes(tmp_path, photo_server, photos):
    photo_server.serve("/coffee.jpg", photos["coffee"])
    good, missing = photo_server.url("/coffee.jpg"), photo_server.url("/gone.jpg")  # 404: fails at once
    env = local_env(tmp_path)
    saved = os.environ.pop("REDIS_URL", None)  # the stack's own embedded Redis: counts start at zero
    try:
        with LocalStack(tmp_path / "var", env) as stack:
            base = stack.start_api(processes=2)
            workers = stack.start_workers(2, "image-processing")
            stack.wait_workers(workers)
            key = stack.add_vendor("acme")
            options = {"resize": [24, 24]}
            job_ids = []
            # A fresh connection per request, so that both gunicorn processes take some.
            for i in range(6):
                with stack.http(key) as http:
                    body = {"record_id": f"g{i}", "image_url": good, "options": options}
                    job_ids.append(http.post(f"{API}/process-image-queue", json=body).json()["job_id"])
            for i in range(2):
                with stack.http(key) as http:
                    body = {"record_id": f"m{i}", "image_url": missing}
                    job_ids.append(http.post(f"{API}/process-image-queue", json=body).json()["job_id"])
            client = stack.http(key)
            items = [{"record_id": f"b{i}", "image_url": good} for i in range(3)]
            job_ids += client.post(
                f"{API}/bulk-process-image", json={"items": items, "options": options}
            ).json()["job_ids"]

            polls = 0  # every GET of a job this test makes, counted here to compare with the API's own count

            def state(job_id: str) -> str:
                nonlocal polls
                polls += 1
                return client.get(f"{API}/job/{job_id}").json()["state"]

            def ended() -> bool:
                return all(state(j) in ("finished", "failed") for j in job_ids)

            wait_for(ended, 60, "11 jobs to end", workers)
            states = [state(j) for j in job_ids]
            conn = stack.redis()
            ran_on = {conn.hget(f"rq:job:{j}", "worker_name") for j in job_ids}
            client.close()
            time.sleep(2.5)  # every process flushes once a second
            text, samples = scrape(base)
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved

    assert states.count("finished") == 9 and states.count("failed") == 2
    assert len(ran_on) == 2, "both workers took jobs"
    light = {"queue": "image-processing", "type": "process-image"}
    assert value(samples, "imgproc_jobs_enqueued_total", **light) == 11
    assert value(samples, "imgproc_jobs_finished_total", **light) == 9
    assert value(samples, "imgproc_jobs_failed_total", code="fetch_failed", **light) == 2
    assert value(samples, "imgproc_jobs_retried_total", code="fetch_failed", **light) == 0
    assert value(samples, "imgproc_job_duration_seconds_count", **light) == 11
    assert value(samples, "imgproc_job_queue_wait_seconds_count", **light) == 11
    assert value(samples, "imgproc_job_duration_seconds_bucket", le="+Inf", **light) == 11
    for stage, count in (("fetch", 9), ("inference", 9), ("encode", 9), ("upload", 9), ("save", 9)):
        assert value(samples, "imgproc_job_stage_seconds_count", type="process-image", stage=stage) == count
    coffee = 400 * 600 / 1e6
    assert value(samples, "imgproc_megapixels_processed_total", type="process-image") == pytest.approx(
        9 * coffee
    )
    # One route per endpoint (the job-type table's): 8 single enqueues, 1 bulk.
    for route, count in (
        ("/api/image-queue/process-image-queue", 8),
        ("/api/image-queue/bulk-process-image", 1),
    ):
        assert (
            value(samples, "imgproc_http_requests_total", route=route, method="POST", status="202") == count
        )
    polled = value(
        samples,
        "imgproc_http_requests_total",
        route="/api/image-queue/job/<job_id>",
        method="GET",
        status="200",
    )
    assert polled == polls
    assert value(samples, "imgproc_queue_depth", queue="image-processing") == 0
    assert value(samples, "imgproc_workers", queue="image-processing") == 2
    assert value(samples, "imgproc_redis_up") == 1
    # The names exported are the ones the alert rules and the dashboard use (tests/test_prometheus_rules.py).
    exported = {family.name for family in text_string_to_metric_families(text)}
    exported = {n if n in METRIC_NAMES else n + "_total" for n in exported}
    assert exported == METRIC_NAMES
    assert not any(
        "job_id=" in line or "record" in line for line in text.splitlines() if not line.startswith("#")
    )

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not on PATH: apt-get install prometheus")
        pytest.skip("promtool is not on PATH: apt-get install prometheus")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_rate_limit_refusals_are_counted(settings, redis_conn):
    from imgproc.api import create_app

    app = create_app(settings.replace(limit_image="1 per minute"))
    svc = app.extensions["imgproc"]
    key = svc.vendors.add("acme")
    client = app.test_client()
    body = {"record_id": "r", "image_url": "https://example.com/a.jpg"}
    statuses = [
        client.post(f"{API}/process-image-queue", json=body, headers={"X-API-Key": key}).status_code
        for _ in range(3)
    ]
    assert statuses == [202, 429, 429]
    svc.metrics.flush()
    samples = samples_of(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "imgproc_rate_limited_total", limit="image") == 2
    assert value(samples, "imgproc_jobs_enqueued_total", queue="image-processing", type="process-image") == 1


def test_made_up_methods_and_paths_add_no_series(client, app):
    """Issue 22 finding 7: labels come from closed sets, so requests without a key cannot grow /metrics."""
    svc = app.extensions["imgproc"]
    client.get("/health")
    client.open("/health", method="ZQAAAA")
    client.open("/no/such/path", method="ZQAAAA")
    client.get("/metrics")  # the scrape's own series
    svc.metrics.flush()
    before = len(client.get("/metrics").get_data(as_text=True).splitlines())
    for i in range(60):
        client.open("/health" if i % 2 else f"/no/such/{i}", method=f"ZQ{i:04d}")
    svc.metrics.flush()
    text = client.get("/metrics").get_data(as_text=True)
    after = len(text.splitlines())
    print(f"/metrics: {before} lines before 60 made-up methods, {after} after")
    methods = {dict(labels)["method"] for name, labels in samples_of(text) if name.startswith("imgproc_http")}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert after == before
