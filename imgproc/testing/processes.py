"""Processes of a local stack: a free port, waiting for a condition, starting and stopping processes.

free_port()                        a TCP port on 127.0.0.1 that nothing listens on
wait_for(check, timeout, what)     poll until ``check()`` is true; StackError when time runs out
spawn(command, env, log_path)      a process of the checkout, its output in a log file
stop_processes(procs, timeout)     SIGTERM, then SIGKILL (with its group) after one deadline
WorkerProcess                      a ``python worker.py``: ready, log, stop
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from imgproc.config import ROOT

#: What a check may raise while what it looks at is not up yet (a refused connection, a file half
#: written, an answer cut short); anything else fails the wait at once.
NOT_YET: tuple[type[BaseException], ...] = (OSError, ValueError, http.client.HTTPException)


class StackError(RuntimeError):
    """Raised when a part of the local stack fails to start, answers wrongly or never gets ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    check: Callable[[], object],
    timeout: float,
    what: str,
    procs: Sequence[subprocess.Popen] = (),
    *,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = NOT_YET,
):
    """Poll ``check`` until it returns something true, and return that.

    StackError when one of ``procs`` exits meanwhile, or after ``timeout`` seconds (saying the last
    value or error of ``check``). An exception of ``ignore`` means "not yet"; any other is raised.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        for proc in procs:
            if proc.poll() is not None:
                where = getattr(proc, "log_path", None)
                raise StackError(
                    f"{what}: a process exited early (code {proc.returncode}); see {where or 'its log'}"
                )
        try:
            last = check()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def spawn(
    command: list[str],
    env: dict[str, str] | None,
    log_path: Path,
    *,
    process: type[subprocess.Popen] = subprocess.Popen,
    **options,
) -> subprocess.Popen:
    """Start ``command`` in the checkout, its output into ``log_path`` (the process's ``log_path``)."""
    with open(log_path, "w") as log:  # the child holds its own copy
        proc = process(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, **options)
    proc.log_path = log_path
    return proc


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


class WorkerProcess(subprocess.Popen):
    """A ``python worker.py`` of the checkout, registered in Redis as ``name`` once its models are loaded.

    ``WorkerProcess.start(...)`` starts one; ``LocalStack.start_workers`` starts them through its
    ``spawn`` (so a stack may run them elsewhere, as tests/faults/test_many_hosts.py does).
    """

    name: str
    log_path: Path

    @staticmethod
    def command(queues: str, name: str, burst: bool = False) -> list[str]:
        """``burst``: it leaves once its queues are empty."""
        return [
            sys.executable,
            "worker.py",
            "--queues",
            queues,
            "--name",
            name,
            *(["--burst"] if burst else []),
        ]

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        queues: str,
        name: str,
        log_dir: Path,
        new_session: bool = False,
        burst: bool = False,
    ) -> WorkerProcess:
        """``new_session``: a group of its own, so that a kill takes its scheduler (a spawned child) too."""
        command = cls.command(queues, name, burst)
        proc = spawn(command, env, Path(log_dir) / f"{name}.log", process=cls, start_new_session=new_session)
        proc.name = name
        return proc

    def ready(self, conn) -> bool:
        """Whether it has registered with Redis (``conn``): its models are loaded."""
        return conn.exists(f"rq:worker:{self.name}") == 1

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (a warm stop: a running job finishes), SIGKILL after ``timeout``; the exit code."""
        (code,) = stop_processes([self], timeout)
        return code
