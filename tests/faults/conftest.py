"""Fault-test machinery: worker processes, a Redis of our own that can restart, a cuttable TCP link."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis as redis_lib

from imgproc.config import ROOT
from imgproc.tools.stack import free_port, stop_processes
from tests.conftest import process_env

#: Seconds a stopped worker gets to leave before it is killed (Kubernetes' default grace period is 30).
STOP_GRACE = 30


def wait_for(check, timeout: float, what: str, interval: float = 0.05):
    """Poll ``check`` until it returns something true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class WorkerProcess:
    """A real ``python worker.py`` process with the test's settings."""

    def __init__(self, env: dict, queues: str, name: str, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "worker.py", "--queues", queues, "--name", name],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a kill takes its scheduler (a spawned child) with it
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self, conn: redis_lib.Redis) -> bool:
        return conn.exists(f"rq:worker:{self.name}") == 1

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        """SIGTERM (a warm stop), SIGKILL after ``STOP_GRACE`` seconds; the exit code."""
        (code,) = stop_processes([self.proc], STOP_GRACE)
        self._log.close()
        return code


@pytest.fixture
def worker_env(settings):
    """Environment for worker processes: the test's settings, fast heartbeats and sweeps."""

    def make(**overrides: str) -> dict:
        env = process_env(
            settings,
            IMGPROC_HEARTBEAT_INTERVAL="1",
            IMGPROC_MAINTENANCE_INTERVAL="2",
            IMGPROC_RETRY_BACKOFF=str(settings.retry_backoff),
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides)
        return env

    return make


@pytest.fixture
def workers(tmp_path):
    """``workers(env, queues, n)`` starts worker processes, stopped (SIGTERM) after the test."""
    started: list[WorkerProcess] = []

    def start(env: dict, queues: str = "image-processing", n: int = 1) -> list[WorkerProcess]:
        new = [
            WorkerProcess(env, queues, f"w{len(started) + i}-{os.getpid()}-{time.monotonic_ns()}", tmp_path)
            for i in range(n)
        ]
        started.extend(new)
        return new

    yield start
    # All at once, one deadline: an idle worker leaves within a second or two, even on a busy host.
    stop_processes([worker.proc for worker in started], STOP_GRACE)
    for worker in started:
        worker.stop()  # its log closed


class RedisServer:
    """A redis-server of our own, with AOF persistence, that a test can stop and start again."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: self._answers(), 10, "redis-server to start")

    def _answers(self) -> bool:
        try:
            return redis_lib.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis_lib.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the AOF and exits
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


class TcpLink:
    """A TCP forwarder to a real service; ``cut()`` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._open = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.1)
        self._running = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._open.set()
        self._thread.start()

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                except OSError:
                    pass
            self._conns.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._running = False
        self.cut()
        self._thread.join()
        self._server.close()
