"""Webhooks from plain ``python worker.py`` replicas behind gunicorn, and what an operator sees without them.

Before, only ``imgproc workers N`` started a worker for the webhooks queue: with N plain replicas (the
documented unit of scale) no webhook was ever sent, and /health still said ok.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC

import pytest
from rq.job import Job

from imgproc.client import Client
from imgproc.testing import LocalStack, PhotoServer, local_env, wait_for
from tests.web.conftest import screenshot
from tests.webhook_receiver import Receiver


@pytest.fixture
def stack(tmp_path, photos):
    """gunicorn on a port of its own and an embedded Redis; workers are started by each test."""
    saved = os.environ.pop("REDIS_URL", None)
    server = PhotoServer(keep_alive=True)
    server.serve("/coffee.jpg", photos["coffee"])
    try:
        with LocalStack(tmp_path / "var", local_env(tmp_path / "var")) as local:
            local.start_api(processes=1)
            local.photo_url = server.url("/coffee.jpg")
            yield local
    finally:
        server.close()
        if saved is not None:
            os.environ["REDIS_URL"] = saved


def vendor(stack: LocalStack, request) -> Client:
    return stack.client(stack.add_vendor(re.sub(r"\W", "-", request.node.name)[:60]))


def enqueue(api: Client, stack: LocalStack, n: int, webhook_url: str) -> list[str]:
    return [
        api.submit(
            "process-image", stack.photo_url, record_id=f"r{i}", webhook_url=webhook_url, resize=[32, 32]
        ).id
        for i in range(n)
    ]


def api_health(stack: LocalStack) -> dict:
    """``GET /health`` (not the Client's: no key needed)."""
    with stack.http() as http:
        return http.get("/health").json()


def test_plain_worker_replicas_deliver_webhooks(stack, request):
    replicas = stack.start_workers(2, "image-processing")
    stack.wait_workers(replicas)
    api = vendor(stack, request)
    health = api_health(stack)
    assert health["status"] == "ok" and health["workers"] == 2, health
    assert health["webhooks"] == {"waiting": 0, "workers": 2, "warning": None}, health
    with Receiver() as receiver:
        ids = enqueue(api, stack, 4, receiver.url)
        wait_for(lambda: len(receiver.received) == 4, 30, "4 webhooks from the replicas", interval=0.2)
    conn = stack.redis()
    by_job = {json.loads(r["body"])["data"]["job_id"]: r["wall"] for r in receiver.received}
    latencies = sorted(
        by_job[j] - Job.fetch(j, connection=conn).ended_at.replace(tzinfo=UTC).timestamp() for j in ids
    )
    conn.close()
    median, worst = latencies[1] * 1000, latencies[-1] * 1000
    print(f"\nwebhook latency with 2 plain replicas: median {median:.0f} ms, max {worst:.0f} ms")
    assert latencies[-1] < 10, latencies
    for job_id in ids:
        job = wait_for(
            lambda j=job_id: (v := api.job(j)).webhook["state"] == "delivered" and v,
            10,
            "the job to show its webhook delivered",
        )
        assert job.state == "finished"


def test_webhooks_waiting_with_nobody_to_deliver_them_are_reported(stack, request, browser):
    # An operator who turned the image workers' delivery off and started no webhook worker.
    (image,) = stack.start_workers(1, "image-processing", IMGPROC_WEBHOOK_THREAD="0")
    stack.wait_workers([image])
    api = vendor(stack, request)
    ops_key = stack.add_vendor("ops", operator=True)
    operator = stack.client(ops_key)
    with Receiver() as receiver:
        (job_id,) = enqueue(api, stack, 1, receiver.url)
        wait_for(lambda: api.job(job_id).state == "finished", 30, "the job")
        health = api_health(stack)
        assert health["status"] == "degraded", health
        assert health["webhooks"]["waiting"] == 1 and health["webhooks"]["workers"] == 0, health
        assert "IMGPROC_WEBHOOK_THREAD" in health["warnings"][0], health
        own = api.stats()["webhooks"]
        assert own["workers"] == 0 and "no worker delivers webhooks" in own["warning"], own
        assert "waiting" not in own  # how many wait is everyone's count, not a vendor's
        everyone = operator.stats()["webhooks"]
        assert everyone["waiting"] == 1 and everyone["workers"] == 0 and everyone["warning"], everyone
        assert receiver.received == []

        # The operator's page in Chromium: a warning above the queues; a webhooks row: 1 waiting, 0 workers.
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.api)
        try:
            page = context.new_page()
            page.goto("/")
            page.get_by_label("API key").fill(ops_key)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Operator").click()
            warning = page.locator("#webhooks-warning")
            warning.wait_for()
            assert "no worker delivers them" in warning.inner_text()
            row = page.locator("#queue-rows tr", has=page.locator("th", has_text="webhooks"))
            cells = row.locator("td").all_inner_texts()
            workers = row.locator("td[data-label='Workers']").inner_text()
            assert cells[0] == "1" and workers == "0", cells
            page.get_by_text("None failed yet; 1 webhook waiting for a worker to deliver them.").wait_for()
            screenshot(page, "operator-webhooks-undelivered")
        finally:
            context.close()

        # A dedicated webhook worker delivers what waited; the warning goes.
        hooks = stack.start_workers(1, "webhooks")
        stack.wait_workers(hooks)
        wait_for(lambda: len(receiver.received) == 1, 30, "the waiting webhook")
    health = wait_for(lambda: (h := api_health(stack))["status"] == "ok" and h, 10, "/health to be ok")
    assert health["webhooks"]["warning"] is None and health["workers"] == 1, health
