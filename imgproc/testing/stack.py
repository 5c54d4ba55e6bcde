"""A whole local imgproc stack for one run: Redis, the API under gunicorn, worker processes.

``imgproc demo``, the bench and the tests start what they need through ``LocalStack`` and talk
to its API with ``imgproc.client.Client`` (``stack.client(key)``), or plain HTTP where they look
at statuses themselves (``stack.http(key)``). Everything started is stopped by ``close()`` (or
leaving the ``with`` block), also on error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from imgproc.jobtypes import QUEUES

from .processes import WorkerProcess, free_port, spawn, stop_processes, wait_for
from .redisserver import start_redis

#: A rate limit that a bench or a test never reaches.
UNLIMITED = "1000000 per minute"


def local_env(var: Path, workers_per_host: int = 1) -> dict[str, str]:
    """``IMGPROC_*`` settings of a local stack in ``var``: SQLite, local storage, no limits in the way."""
    return {
        "IMGPROC_DATABASE_URL": f"sqlite:///{var / 'imgproc.db'}",
        "IMGPROC_STORAGE_DIR": str(var / "media"),
        "IMGPROC_FETCH_ALLOW_HOSTS": "127.0.0.1",
        "IMGPROC_LIMIT_GLOBAL": UNLIMITED,
        "IMGPROC_LIMIT_IMAGE": UNLIMITED,
        "IMGPROC_LIMIT_BG_REMOVAL": UNLIMITED,
        "IMGPROC_LIMIT_BULK": UNLIMITED,
        "IMGPROC_LIMIT_SESSION_READS": UNLIMITED,
        # Fair share caps a vendor at this many jobs handed to workers: above any worker count here.
        "IMGPROC_VENDOR_CONCURRENCY": "64",
        "IMGPROC_WORKERS_PER_HOST": str(workers_per_host),
    }


class LocalStack:
    """Redis, gunicorn and worker processes for one run, sharing settings through the environment.

    ``env`` holds the ``IMGPROC_*`` variables every process gets (on top of
    this process's environment); each process logs to its own file in ``var``.
    ``own_redis``: an embedded Redis even when ``REDIS_URL`` is set (the demo's jobs, metrics and
    keys then never reach a Redis that outlives the stack).
    """

    def __init__(self, var: Path, env: dict[str, str] | None = None, own_redis: bool = False):
        self.var = var
        var.mkdir(parents=True, exist_ok=True)
        self._stack = ExitStack()
        self.procs: list[subprocess.Popen] = []
        self.redis_url = start_redis(self._stack, var, own=own_redis)
        # Callbacks run last-in first-out: the processes stop while Redis is still there.
        self._stack.callback(self._stop_all)
        self.embedded_redis = own_redis or not os.environ.get("REDIS_URL")
        # The API's address is fixed now: workers started before it build result URLs from it.
        self.api = f"http://127.0.0.1:{free_port()}"
        inherited = dict(os.environ)
        if self.embedded_redis:  # Sentinel would send every process to the shared Redis after all
            for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"):
                inherited.pop(name, None)
        self.env = dict(
            inherited,
            REDIS_URL=self.redis_url,
            PYTHONUNBUFFERED="1",
            IMGPROC_PUBLIC_URL=self.api,
            **(env or {}),
        )
        self._count = 0
        try:
            self.migrate()
        except BaseException:
            self.close()  # the embedded Redis too
            raise

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def callback(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` when the stack closes (before Redis goes)."""
        self._stack.callback(fn, *args)

    def settings(self):
        """The ``Settings`` every process of this stack reads from its environment."""
        from imgproc.config import Settings

        return Settings.from_env(self.env)

    def redis(self):
        """A Redis client on this stack's Redis."""
        from imgproc.queueing import connect

        return connect(self.redis_url)

    def client(self, key: str, **options):
        """An ``imgproc.client.Client`` of the vendor whose API key is ``key``, on this stack's API."""
        from imgproc.client import Client

        return Client(self.api, key, **options)

    def http(self, key: str = "", timeout: float = 60):
        """A plain HTTP client (httpx) on this stack's API, with ``key`` when given: for what a test or
        the bench looks at itself (a status, ``/health``) rather than through ``client``."""
        import httpx

        return httpx.Client(base_url=self.api, headers={"X-API-Key": key} if key else {}, timeout=timeout)

    def migrate(self) -> None:
        """Upgrade the stack's database before any process starts, as compose's ``migrate`` service does."""
        from imgproc.adapters import schema
        from imgproc.adapters.db import make_engine

        engine = make_engine(self.settings(), check_schema=False)
        try:
            schema.upgrade(engine)
        finally:
            engine.dispose()

    def add_vendor(self, name: str, operator: bool = False) -> str:
        """Create a vendor (an operator sees every vendor's jobs) in the stack's database; its API key."""
        from imgproc.adapters.db import make_engine
        from imgproc.adapters.vendors import Vendors

        engine = make_engine(self.settings())
        try:
            return Vendors(engine).add(name, operator=operator)
        finally:
            engine.dispose()

    def spawn(self, name: str, command: list[str], env: dict[str, str], **options) -> subprocess.Popen:
        """Start ``command`` in the checkout, logging to ``<var>/<name>.log``; stopped with the stack.

        ``options``: ``spawn``'s (``process=WorkerProcess``).
        """
        proc = spawn(command, env, self.var / f"{name}.log", **options)
        self.procs.append(proc)
        return proc

    def start_api(self, processes: int = 2, threads: int = 1, config: str | None = None) -> str:
        """gunicorn with ``processes`` workers (gthread when ``threads`` > 1); returns the API's base URL.

        ``config``: a gunicorn configuration file (``deploy/gunicorn.conf.py``), under the flags given here.
        """
        import httpx

        command = [
            sys.executable,
            "-m",
            "gunicorn",
            *(["-c", config] if config else []),
            "-b",
            self.api.removeprefix("http://"),
            "-w",
            str(processes),
            "--threads",
            str(threads),
            "api:app",
        ]
        proc = self.spawn("api", command, self.env)
        with self.http(timeout=5) as http:
            wait_for(
                lambda: http.get("/health").status_code == 200,
                60,
                "the API",
                [proc],
                ignore=(httpx.TransportError,),
            )
        return self.api

    def start_workers(
        self, n: int, queues: tuple[str, ...] | str = QUEUES, **env: str
    ) -> list[WorkerProcess]:
        """``n`` ``worker.py`` processes (``IMGPROC_WORKERS_PER_HOST=n`` unless given), not yet waited for."""
        queues = queues if isinstance(queues, str) else ",".join(queues)
        worker_env = {**self.env, "IMGPROC_WORKERS_PER_HOST": str(n), **env}
        started = []
        for _ in range(n):
            self._count += 1
            name = f"worker-{self._count}-{os.getpid()}"
            proc = self.spawn(name, WorkerProcess.command(queues, name), worker_env, process=WorkerProcess)
            proc.name = name
            started.append(proc)
        return started

    def wait_workers(self, procs: list[WorkerProcess], timeout: float = 120) -> None:
        """Wait until every one of ``procs`` has loaded its models and registered with Redis."""
        conn = self.redis()
        try:
            wait_for(
                lambda: all(p.ready(conn) for p in procs),
                timeout,
                f"{len(procs)} worker(s) to load their models",
                procs,
            )
        finally:
            conn.close()

    def stop(self, procs: list[subprocess.Popen], timeout: float = 60) -> None:
        """SIGTERM (a warm shutdown: a running job finishes), then SIGKILL after ``timeout``."""
        stop_processes(procs, timeout)
        for proc in procs:
            if proc in self.procs:
                self.procs.remove(proc)

    def _stop_all(self) -> None:
        self.stop(list(self.procs))

    def close(self) -> None:
        """Stop every process this stack started, then its embedded Redis."""
        self._stack.close()
