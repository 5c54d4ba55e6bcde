"""``imgproc workers N``: a pool of N worker processes on this host, each ``python worker.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from imgproc.config import ROOT


def run_pool(n: int, queues: str) -> int:
    """Run N worker processes in the foreground, replacing any that exits; SIGINT/SIGTERM stops them all.

    A worker leaves on its own after ``IMGPROC_WORKER_MAX_JOBS`` jobs (recycling)
    or when it crashes; either way a fresh one takes its place. One that cannot
    start (exit code 2: a missing model, a bad setting) stops the pool.
    """
    env = dict(os.environ, IMGPROC_WORKERS_PER_HOST=str(n))
    command = [sys.executable, str(ROOT / "worker.py"), "--queues", queues]
    procs = [subprocess.Popen(command, env=env) for _ in range(n)]
    stopping = False

    def stop(signum=None, frame=None):
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
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
            procs[i] = subprocess.Popen(command, env=env)
        time.sleep(0.5)
    return max(proc.returncode for proc in procs)
