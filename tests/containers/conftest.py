"""The images and docker-compose.yml, run as an operator runs them: podman, a compose client, the API's port.

`make images` builds the images (deploy/images/build.sh); `make images-test` runs this folder
(IMGPROC_IMAGES_TEST=1). `make test` leaves it out (tests/conftest.py): it needs the images, which
take minutes to build, so a missing image fails here rather than skipping.

The compose client is Debian's docker-compose 1.29, talking to podman's Docker-compatible API
(`podman system service`, started here on a socket of this run's own). Podman runs health checks from
systemd timers, and no systemd runs on these machines: `HealthChecks` stands in for the timers,
running each container's check at its own interval, as systemd would.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgproc import testing
from imgproc.config import ROOT
from imgproc.testing import free_port

CONTAINERS_CONF = ROOT / "deploy" / "images" / "containers.conf"


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def container_logs(container: str) -> str:
    """Everything a container printed, both streams, from one `podman logs`."""
    done = podman("logs", container)
    return done.stdout + done.stderr


def require_image(name: str) -> None:
    if podman("image", "exists", name, check=False).returncode != 0:
        pytest.fail(f"no image {name} here: build it first with `make images`")


#: The harness's wait_for, as patient as containers need: a look every second, any error of it "not yet".
wait_for = functools.partial(testing.wait_for, interval=1.0, ignore=(Exception,))


class HealthChecks(threading.Thread):
    """Runs `podman healthcheck run` for each container of a project at its own interval (systemd's job)."""

    def __init__(self, project: str):
        super().__init__(daemon=True, name=f"healthchecks-{project}")
        self.project = project
        self.stopping = threading.Event()
        self._due: dict[str, float] = {}
        self._interval: dict[str, float | None] = {}

    def _interval_of(self, container: str) -> float | None:
        if container not in self._interval:
            found = podman("inspect", "--format", "{{json .Config.Healthcheck}}", container, check=False)
            check = json.loads(found.stdout or "null") if found.returncode == 0 else None
            interval = (check or {}).get("Interval") or 0
            self._interval[container] = interval / 1e9 if check and check.get("Test") else None
        return self._interval[container]

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            running = podman(
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                check=False,
            ).stdout.split()
            now = time.monotonic()
            for container in running:
                interval = self._interval_of(container)
                if interval and now >= self._due.get(container, 0):
                    self._due[container] = now + interval
                    podman("healthcheck", "run", container, check=False, timeout=60)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=70)


@pytest.fixture(scope="session")
def podman_socket(tmp_path_factory) -> Iterator[str]:
    """podman's Docker-compatible API for docker-compose, on a socket of this run's own."""
    if not shutil.which("podman") or not shutil.which("docker-compose"):
        pytest.fail("podman and docker-compose are needed: apt-get install podman runc docker-compose")
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=podman_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(socket.exists, 30, "podman system service")
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(timeout=30)


class Compose:
    """One compose project of the real docker-compose.yml (plus this folder's override)."""

    def __init__(self, project: str, socket: str, env: dict[str, str], profiles: tuple[str, ...] = ()):
        self.project = project
        self.env = {**podman_env(), "DOCKER_HOST": socket, "COMPOSE_PROJECT_NAME": project, **env}
        self.files = [ROOT / "docker-compose.yml", Path(__file__).with_name("compose.test.yml")]
        self.profiles = profiles

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        command = ["docker-compose", "--no-ansi", *(f"--file={f}" for f in self.files)]
        command += [f"--profile={p}" for p in self.profiles]
        done = subprocess.run(
            [*command, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def containers(self, service: str, all_: bool = False) -> list[str]:
        """The service's containers, by name (`<project>_<service>_<n>`), in replica order."""
        found = podman(
            "ps",
            *(["-a"] if all_ else []),
            "--format",
            "{{.Names}}",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ).stdout.split()
        return sorted(found, key=lambda name: int(re.sub(r"\D", "", name.rsplit("_", 1)[-1]) or 0))

    def health(self, container: str) -> str:
        return podman("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()

    def hostname(self, container: str) -> str:
        return podman("inspect", "--format", "{{.Config.Hostname}}", container).stdout.strip()

    def logs(self) -> str:
        return self("logs", "--no-color", "--tail=60", check=False, timeout=120).stdout


def compose_stack(name: str, socket: str, profiles: tuple[str, ...] = (), **env: str) -> Iterator[dict]:
    """Up, healthy, a vendor added; down with its volumes afterwards (its logs printed when a test failed)."""
    project = f"imgproc{name}{os.getpid()}"
    port = free_port()
    compose = Compose(
        project,
        socket,
        {"IMGPROC_PORT": str(port), "IMGPROC_PUBLIC_URL": f"http://127.0.0.1:{port}", **env},
        profiles,
    )
    checks = HealthChecks(project)
    checks.start()
    started = time.monotonic()
    try:
        compose("up", "-d", "--no-build", timeout=900)
        api = f"http://127.0.0.1:{port}"
        for service in ("api", "worker", "webhooks"):
            for container in compose.containers(service):
                wait_for(lambda c=container: compose.health(c) == "healthy", 300, f"{container} healthy")
        added = compose("exec", "-T", "api", "imgproc", "vendors", "add", "acme").stdout
        key = added.split()[-1]  # the last line: "ik_" and URL-safe base64, which may hold "-"
        assert key.startswith("ik_"), added
        yield {"compose": compose, "api": api, "key": key, "up_s": time.monotonic() - started}
    finally:
        print(compose.logs())  # shown by pytest when a test of the stack failed
        checks.stop()
        compose("down", "--volumes", "--timeout=20", check=False, timeout=600)
