"""The inference workers of one host, counted through Redis, so replicas started one by one share its cores.

Two ``python worker.py`` under systemd, ``docker compose up --scale
worker=3`` or a node's pods do not know about each other; each would take
every core for its ONNX Runtime threads, and their threads would then
preempt each other in the middle of every operator (measured: 2 such
replicas on 2 cores at 0.84x the floor's rate, against 0.94x for 1 thread
each; README, Performance). Each worker beats its name into a sorted set of
its host, scored by time, and counts the members seen within ``TTL``.

The host is the running kernel (its boot id): containers and pods on one
machine share it while their host names differ. Workers of another Redis
are not counted.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import redis

#: Sorted set of a host's inference workers, scored by their last beat (unix seconds).
KEY_HOST = "imgproc:host:{}"
#: Seconds after its last beat that a worker still counts (a killed one drops out after this).
TTL = 30
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def host_id(boot_id: Path = BOOT_ID) -> str:
    """This machine's kernel boot id, the same in every container on it; the host name where there is none."""
    try:
        return boot_id.read_text().strip() or socket.gethostname()
    except OSError:
        return socket.gethostname()


class HostPeers:
    """One worker's place among its host's inference workers."""

    def __init__(self, conn: redis.Redis, name: str, host: str | None = None):
        self.conn = conn
        self.name = name
        self.key = KEY_HOST.format(host or host_id())

    def beat(self) -> int:
        """Say this worker is alive; how many of the host's workers are (itself included)."""
        now = time.time()
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {self.name: now})
            pipe.zremrangebyscore(self.key, "-inf", now - TTL)
            pipe.zcard(self.key)
            pipe.expire(self.key, TTL)
            return max(1, pipe.execute()[2])

    def leave(self) -> None:
        """Stop counting this worker (it is stopping): its siblings take its cores at their next job."""
        self.conn.zrem(self.key, self.name)
