"""docker-compose.yml end to end, tested from outside over the API's published port.

One stack for the module, its tests in order: up (migrate once, every service healthy, a vendor
added with `exec`), a bulk of real photos with a signed webhook, then the faults an operator meets
(a worker killed or stopped in the middle of a job, Redis and MariaDB restarted), three replicas on
one host, the containers' user and read-only root, and last Prometheus (the `monitoring` profile)
firing the no-worker alert once the workers stop.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time

import httpx
import pytest
from PIL import Image
from standardwebhooks import Webhook

from imgproc.client import Client
from imgproc.testing import PhotoServer, StackError, free_port
from tests.containers.conftest import compose_stack, container_logs, podman, require_image, wait_for
from tests.webhook_receiver import Receiver

#: What a container calls this host (podman writes it into each container's /etc/hosts).
HOST = "host.containers.internal"


@pytest.fixture(scope="module")
def photo_urls(photos):
    with PhotoServer(bind="0.0.0.0", name=HOST) as server:
        for name, body in photos.items():
            server.serve(f"/{name}.jpg", body)
        yield server


@pytest.fixture(scope="module")
def receiver():
    with Receiver(bind="0.0.0.0", name=HOST) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(podman_socket, photo_urls, receiver):
    require_image("imgproc:cpu")
    allow = f"{HOST}:{photo_urls.port},{HOST}:{receiver.port}"
    yield from compose_stack(
        "e2e",
        podman_socket,
        ("monitoring",),
        IMGPROC_TEST_ALLOW_HOSTS=allow,
        PROMETHEUS_PORT=str(free_port()),
    )


@pytest.fixture(scope="module")
def client(stack):
    with Client(stack["api"], stack["key"], timeout=60) as client:
        yield client


def _busy_container(stack) -> str:
    """The worker container whose worker is busy now (`imgproc workers --status`'s HOST column)."""
    compose = stack["compose"]
    status = compose("exec", "-T", "api", "imgproc", "workers", "--status", check=False).stdout
    busy = {line.split()[1] for line in status.splitlines() if " busy " in f" {line} "}
    mine = [c for c in compose.containers("worker") if compose.hostname(c) in busy]
    assert len(mine) == 1, status
    return mine[0]


def _started(client, job_id: str) -> None:
    wait_for(lambda: client.job(job_id).state == "started", 120, f"job {job_id} started", interval=0.2)


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {state: n for state, n in counts.items() if n}


def _replicas_healthy(compose, n: int) -> None:
    wait_for(
        lambda: (
            len(cs := compose.containers("worker")) == n and all(compose.health(c) == "healthy" for c in cs)
        ),
        300,
        f"{n} healthy worker replicas",
    )


def test_up_migrates_once_and_every_service_is_healthy(stack):
    compose = stack["compose"]
    migrations = compose.containers("migrate", all_=True)
    assert len(migrations) == 1
    state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", migrations[0]).stdout
    assert state.split() == ["exited", "0"]
    assert "database schema upgraded" in container_logs(migrations[0])
    assert len(compose.containers("worker")) == 2
    for service in ("api", "worker", "webhooks", "redis", "mariadb"):
        for container in compose.containers(service):
            assert compose.health(container) == "healthy", container
    health = httpx.get(stack["api"] + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["workers"] == 2, health
    assert stack["key"].startswith("ik_")
    print(f"compose up to healthy with a vendor: {stack['up_s']:.0f} s")


def test_a_bulk_of_real_photos_finishes_downloads_from_the_host_and_signs_its_webhook(
    stack, client, photo_urls, receiver
):
    bulk = client.bulk(
        "remove-bg",
        [photo_urls.url("/astronaut.jpg"), photo_urls.url("/two-people.jpg")],
        webhook_url=receiver.url,
        max_size=512,
    )
    crop = client.crop_face(photo_urls.url("/astronaut.jpg"), record_id="crop-1", preset="us-passport")
    resize = client.process_image(photo_urls.url("/coffee.jpg"), record_id="resize-1", resize=[200, 200])
    # Alpha matting loads the kernels compiled at build time from the read-only root (copied to /tmp).
    matte = client.remove_background(
        photo_urls.url("/astronaut.jpg"), record_id="matte-1", alpha_matting=True, max_size=384
    )
    jobs = [*bulk.wait(timeout=600).results(), crop.wait(timeout=600), resize.wait(timeout=600)]
    jobs.append(matte.wait(timeout=600))
    assert [job.state for job in jobs] == ["finished"] * 5, [(j.id, j.state, j.error) for j in jobs]
    for job in jobs:
        got = httpx.get(job.result.url, timeout=30)  # the URL as the API gave it, from this host
        assert got.status_code == 200, job.result.url
        assert Image.open(io.BytesIO(got.content)).size == (job.result.width, job.result.height)
    assert max(jobs[3].result.width, jobs[3].result.height) == 200

    secret = stack["compose"](
        "exec", "-T", "api", "imgproc", "vendors", "webhook-secret", "acme"
    ).stdout.strip()
    ids = {job.id for job in jobs[:2]}
    wait_for(lambda: ids <= _webhook_jobs(receiver), 120, "a webhook for each job of the bulk")
    for call in receiver.received:
        Webhook(secret).verify(call["body"], {k.lower(): v for k, v in call["headers"].items()})


def _webhook_jobs(receiver) -> set[str]:
    return {json.loads(call["body"])["data"].get("job_id") for call in receiver.received}


def test_a_worker_killed_mid_background_removal_loses_and_repeats_nothing(
    stack, client, photo_urls, receiver
):
    compose = stack["compose"]
    receiver.received.clear()
    job = client.remove_background(
        photo_urls.url("/two-people.jpg"), record_id="killed-1", webhook_url=receiver.url
    )
    _started(client, job.id)
    victim = _busy_container(stack)
    killed_at = time.monotonic()
    # SIGKILL to the container's main process, as the OOM killer or a crash ends it: podman honours
    # `restart: unless-stopped` then, not after `podman kill`, which it counts as the user's stop.
    os.kill(int(podman("inspect", "--format", "{{.State.Pid}}", victim).stdout), signal.SIGKILL)
    done = job.wait(timeout=300)
    assert done.state == "finished", done.error
    assert done.attempts == 2  # the lost attempt counted, the job run again by the other worker
    print(f"killed mid-job: finished {time.monotonic() - killed_at:.1f} s after the kill")
    wait_for(lambda: _webhook_jobs(receiver) == {job.id}, 60, "the job's webhook")
    time.sleep(5)  # a second delivery of the same job would arrive by now
    finished = [json.loads(c["body"]) for c in receiver.received]
    assert [f["data"]["job_id"] for f in finished] == [job.id], finished
    # restart: unless-stopped brings the killed replica back.
    _replicas_healthy(compose, 2)
    assert podman("inspect", "--format", "{{.RestartCount}}", victim).stdout.strip() == "1"


def test_a_stopped_worker_finishes_its_job_within_the_grace_period(stack, client, photo_urls):
    compose = stack["compose"]
    job = client.remove_background(photo_urls.url("/astronaut.jpg"), record_id="stopped-1")
    _started(client, job.id)
    victim = _busy_container(stack)
    assert podman("inspect", "--format", "{{.Config.StopTimeout}}", victim).stdout.strip() == "330"
    started = time.monotonic()
    podman("stop", victim, timeout=400)  # SIGTERM, SIGKILL only after the compose file's 330 s
    stopped_s = time.monotonic() - started
    done = client.job(job.id)
    assert done.state == "finished" and done.attempts == 1, (done.state, done.attempts, done.error)
    exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", victim).stdout.strip()
    assert exit_code == "0" and stopped_s < 120, (exit_code, stopped_s)
    print(f"stopped mid-job: the job finished and the container exited 0 after {stopped_s:.1f} s")
    compose("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=2")
    _replicas_healthy(compose, 2)


def test_a_redis_restart_keeps_every_queued_job(stack, client, photo_urls):
    compose = stack["compose"]
    compose("stop", "worker", "webhooks")
    batch = client.bulk("process-image", [photo_urls.url("/coffee.jpg")] * 12, resize=[64, 64])
    assert batch.counts.get("queued") == 12, batch.counts
    compose("restart", "redis")
    wait_for(lambda: httpx.get(stack["api"] + "/health", timeout=5).status_code == 200, 120, "Redis back")
    kept = client.batch(batch.id)
    assert kept.total == 12 and kept.counts.get("queued") == 12, kept.counts
    compose("start", "worker", "webhooks")
    ended = client.batch(batch.id).wait(timeout=300)
    assert _nonzero(ended.counts) == {"finished": 12}, ended.counts


def test_mariadb_restarted_mid_run_retries_and_loses_nothing(stack, client, photo_urls):
    """Jobs run while MariaDB is down: each waits to write its record (IMGPROC_DATABASE_WAIT), all end."""
    compose = stack["compose"]
    _replicas_healthy(compose, 2)
    workers = compose.containers("worker") + compose.containers("webhooks")
    podman("pause", *workers)  # the jobs wait queued while the database goes
    try:
        batch = client.bulk("process-image", [photo_urls.url("/astronaut.jpg")] * 20, resize=[300, 300])
        compose("stop", "--timeout=10", "mariadb")
    finally:
        podman("unpause", *workers)
    down_s = 20
    time.sleep(down_s)  # the workers take the jobs with no database to write their records to
    compose("start", "mariadb")
    ended = client.batch(batch.id).wait(timeout=600)
    assert _nonzero(ended.counts) == {"finished": 20}, ended.counts
    results = ended.results()
    assert len({job.result.url for job in results}) == 20
    for job in results[::5]:
        assert httpx.get(job.result.url, timeout=30).status_code == 200
    retried = [job for job in results if job.attempts > 1]
    waits = sum(
        container_logs(c).count("database update record failed") for c in compose.containers("worker")
    )
    print(f"MariaDB down {down_s} s mid-run: 20 of 20 finished, {len(retried)} retried, {waits} record waits")
    assert waits > 0  # the outage was met, and waited out


def _throughput(client, photo_urls, n: int) -> float:
    """Background removals per minute over a bulk of ``n``."""
    started = time.monotonic()
    batch = client.bulk("remove-bg", [photo_urls.url("/astronaut.jpg")] * n, max_size=512)
    ended = batch.wait(timeout=900)
    assert _nonzero(ended.counts) == {"finished": n}, ended.counts
    return n / (time.monotonic() - started) * 60


def test_three_replicas_share_the_cores_and_do_at_least_what_two_do(stack, client, photo_urls):
    compose = stack["compose"]
    _replicas_healthy(compose, 2)
    two = _throughput(client, photo_urls, 8)
    compose("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=3")
    _replicas_healthy(compose, 3)
    time.sleep(12)  # each replica counts its siblings every heartbeat and retunes its threads
    three = _throughput(client, photo_urls, 8)
    expected = max(1, (os.cpu_count() or 1) // 3)  # the replicas see the host's cores
    for container in compose.containers("worker"):
        logs = container_logs(container)
        said = re.findall(r"\((\d+) threads, batch|sessions rebuilt with (\d+) thread", logs)
        threads = [int(loaded or rebuilt) for loaded, rebuilt in said]
        print(f"{container}: threads {threads}")
        assert threads and threads[-1] == expected, (container, threads)
    print(f"background removals per minute: 2 replicas {two:.1f}, 3 replicas {three:.1f}")
    assert three >= two * 0.9, (two, three)


def test_containers_run_as_uid_10001_on_a_read_only_root(stack):
    compose = stack["compose"]
    for service in ("api", "worker", "webhooks"):
        container = compose.containers(service)[0]
        assert podman("exec", container, "id", "-u").stdout.strip() == "10001"
        assert (
            podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", container).stdout.strip()
            == "true"
        )
        assert podman("exec", container, "touch", "/app/x", check=False).returncode != 0
        assert podman("exec", container, "touch", "/tmp/x", "/app/var/media/x").returncode == 0


def test_prometheus_scrapes_the_api_and_fires_the_worker_down_alert(stack):
    compose = stack["compose"]
    (prometheus,) = compose.containers("prometheus")
    port = podman("port", prometheus, "9090").stdout.strip().rsplit(":", 1)[1]
    api = f"http://127.0.0.1:{port}/api/v1"

    def target_up():
        targets = httpx.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
        return [t for t in targets if t["labels"]["job"] == "imgproc" and t["health"] == "up"]

    wait_for(target_up, 120, "Prometheus's imgproc target up")
    rules = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
    assert any(r["name"] == "ImgprocNoWorker" for g in rules for r in g["rules"])
    compose("stop", "worker")

    def firing():
        alerts = httpx.get(f"{api}/alerts", timeout=5).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "ImgprocNoWorker" and a["state"] == "firing"]

    # `for: 5m` in deploy/prometheus/rules.yml, after a scrape (15 s) and an evaluation (15 s).
    try:
        fired = wait_for(firing, 420, "ImgprocNoWorker firing", interval=10)
    except StackError:
        print("alerts:", httpx.get(f"{api}/alerts", timeout=5).json()["data"]["alerts"])
        workers = httpx.get(f"{api}/query", params={"query": "imgproc_workers"}, timeout=5).json()
        print("imgproc_workers:", workers["data"]["result"])
        print(compose("ps", check=False).stdout)
        raise
    assert {a["labels"]["queue"] for a in fired} >= {"bg-removal"}
