"""``imgproc workers N``: a pool of N worker processes on this host, each ``python worker.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from imgproc.config import ROOT
from imgproc.jobtypes import QUEUE_WEBHOOKS


def run_pool(n: int, queues: str, webhook_workers: int = 1) -> int:
    """Run N image workers and ``webhook_workers`` webhook workers, replacing any that exits.

    A worker leaves on its own after ``IMGPROC_WORKER_MAX_JOBS`` jobs (recycling)
    or when it crashes; either way a fresh one takes its place. One that cannot
    start (exit code 2: a missing model, a bad setting) stops the pool, and
    SIGINT/SIGTERM stops them all; SIGHUP is passed on to every worker.
    Webhook workers load no model and take a sliver of CPU: they wait on
    receivers.
    """
    env = dict(os.environ, IMGPROC_WORKERS_PER_HOST=str(n))
    worker = [sys.executable, str(ROOT / "worker.py"), "--queues"]
    commands = [worker + [queues]] * n + [worker + [QUEUE_WEBHOOKS]] * webhook_workers
    procs = [subprocess.Popen(command, env=env) for command in commands]
    stopping = False

    def stop(signum=None, frame=None):
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def reload(signum=None, frame=None):
        for proc in procs:  # each worker reads IMGPROC_WRITEBACK_FILE again
            if proc.poll() is None:
                proc.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    while not all(proc.poll() is not None for proc in procs) or not stopping:
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is None or stopping:
                continue
            if code == 2:
                print("a worker could not start; stopping the others", file=sys.stderr)
                stop()
                break
            print(f"worker {proc.pid} exited ({code}); starting a new one", file=sys.stderr)
            procs[i] = subprocess.Popen(commands[i], env=env)
        time.sleep(0.5)
    return max(proc.returncode for proc in procs)
