"""imgproc:cpu alone, as `docker run` runs it: the API and a worker in two containers, one job end to end.

CI's check of the image (`make images IMAGES=cpu` then this module): the API container on the host's
network, a worker container beside it sharing a folder (SQLite and the media), the host's Redis.
"""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from imgproc.client import Client
from imgproc.testing import free_port
from tests.containers.conftest import podman, require_image, wait_for

IMAGE = "imgproc:cpu"
#: A Redis database of its own, beside the suite's 13.
REDIS_URL = "redis://127.0.0.1:6379/8"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The folder both containers mount at /app/var: the SQLite file and the media (uid 10001 writes)."""
    require_image(IMAGE)
    folder = tmp_path_factory.mktemp("var")
    (folder / "media").mkdir()
    for path in (folder, folder / "media"):
        path.chmod(0o777)
    return folder


def _run(name: str, shared, *command: str, detach: bool = True, env: dict[str, str] | None = None):
    options = ["--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp", "-v", f"{shared}:/app/var"]
    options += ["-e", f"REDIS_URL={REDIS_URL}"]
    for key, value in (env or {}).items():
        options += ["-e", f"{key}={value}"]
    return podman("run", *(["-d"] if detach else []), "--name", name, *options, IMAGE, *command, timeout=300)


@pytest.fixture(scope="module")
def api(shared, redis_conn_8):
    port = free_port()
    migrated = _run("imgproc-ci-migrate", shared, "imgproc", "db", "upgrade", detach=False)
    assert "upgraded" in migrated.stdout + migrated.stderr
    env = {"GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 1"}
    names = ["imgproc-ci-api", "imgproc-ci-worker"]
    try:
        _run(names[0], shared, "gunicorn", "-c", "deploy/gunicorn.conf.py", "api:app", env=env)
        _run(names[1], shared)  # the image's command: one worker
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(base + "/health", timeout=5).json()["workers"] == 1, 180, "a worker ready")
        yield base
    finally:
        for name in names:
            print(podman("logs", "--tail", "30", name, check=False).stderr)
            podman("rm", "--force", "--time", "5", name, check=False)


@pytest.fixture(scope="module")
def redis_conn_8():
    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    conn.flushdb()
    yield conn
    conn.flushdb()


def test_the_image_runs_one_background_removal_as_uid_10001(api, shared, photos):
    added = podman("exec", "imgproc-ci-api", "imgproc", "vendors", "add", "acme").stdout
    key = added.split()[-1]  # the last line: "ik_" and URL-safe base64, which may hold "-"
    assert key.startswith("ik_"), added
    assert podman("exec", "imgproc-ci-worker", "id", "-u").stdout.strip() == "10001"
    with Client(api, key) as client:
        job = client.remove_background(photos["astronaut"], record_id="ci-1", max_size=256).wait(timeout=300)
    assert job.state == "finished", job.error
    png = httpx.get(job.result.url, timeout=30)
    assert png.status_code == 200
    image = Image.open(io.BytesIO(png.content))
    assert image.mode == "RGBA" and max(image.size) == 256
    # The result sits in the shared folder, written by the worker container's user.
    (written,) = [p for p in (shared / "media").rglob("*") if p.is_file()]
    assert written.stat().st_uid == 10001
