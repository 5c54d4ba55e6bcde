"""Fault-test machinery: worker processes and a Redis of our own that can restart (the harness's,
``imgproc.testing``), with the test's settings; a cuttable TCP link."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from imgproc.testing import RedisServer, WorkerProcess, free_port, stop_processes
from tests.conftest import process_env

#: Seconds a stopped worker gets to leave before it is killed (Kubernetes' default grace period is 30).
STOP_GRACE = 30


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
    """``workers(env, queues, n)`` starts worker processes (each a group of its own, so that a kill takes
    its scheduler too), stopped (SIGTERM, SIGKILL after ``STOP_GRACE``) after the test."""
    started: list[WorkerProcess] = []

    def start(env: dict, queues: str = "image-processing", n: int = 1) -> list[WorkerProcess]:
        new = [
            WorkerProcess.start(
                env,
                queues,
                f"w{len(started) + i}-{os.getpid()}-{time.monotonic_ns()}",
                tmp_path,
                new_session=True,
            )
            for i in range(n)
        ]
        started.extend(new)
        return new

    yield start
    # All at once, one deadline: an idle worker leaves within a second or two, even on a busy host.
    stop_processes(started, STOP_GRACE)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own (AOF, fsync always) that it may stop and start again."""
    server = RedisServer(tmp_path / "redis")
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
