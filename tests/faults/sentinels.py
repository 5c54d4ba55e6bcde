"""A Redis master, its replica and three sentinels on 127.0.0.1, each a redis-server of our own.

The master and the replica are the harness's ``RedisServer``s (AOF, fsync every second); the
sentinels run from a file each, which they rewrite.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis as redis_lib

from imgproc.testing import RedisServer, free_port, stop_processes, wait_for

MASTER_NAME = "imgproc"


def _answers(port: int) -> bool:
    try:
        return redis_lib.Redis(port=port, socket_connect_timeout=0.2).ping()
    except redis_lib.RedisError:
        return False


class SentinelGroup:
    """``master`` and ``replica`` (AOF on), three sentinels that fail over after 1 s without the master."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.master = RedisServer(directory / "master", fsync="everysec")
        self.replica = RedisServer(
            directory / "replica", "--replicaof", "127.0.0.1", str(self.master.port), fsync="everysec"
        )
        self.ports = {"master": self.master.port, "replica": self.replica.port}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinel_procs: list[subprocess.Popen] = []

    @property
    def sentinels(self) -> str:
        """``REDIS_SENTINELS`` for these sentinels."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        replica = redis_lib.Redis(port=self.replica.port)
        wait_for(lambda: replica.info("replication")["master_link_status"] == "up", 20, "the replica to sync")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{i}.conf"  # sentinels rewrite their file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['master']} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            )
            with open(self.dir / f"sentinel-{i}.log", "w") as log:
                sentinel = [shutil.which("redis-server"), str(conf), "--sentinel"]
                self.sentinel_procs.append(subprocess.Popen(sentinel, stdout=log, stderr=subprocess.STDOUT))
        for port in self.sentinel_ports:
            sentinel = redis_lib.Redis(port=port, socket_connect_timeout=0.2)
            wait_for(
                lambda s=sentinel: (
                    _answers(s.connection_pool.connection_kwargs["port"])
                    and s.sentinel_master(MASTER_NAME)["num-other-sentinels"] == 2
                    and s.sentinel_master(MASTER_NAME)["num-slaves"] == 1
                ),
                30,
                "three sentinels that know the replica and each other",
                interval=0.2,
            )

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                host, master = redis_lib.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    MASTER_NAME
                )
                return int(master)
            except redis_lib.RedisError:
                continue
        raise AssertionError("no sentinel answers")

    def kill_master(self) -> float:
        """SIGKILL the master (no goodbye to anyone); the monotonic time of the kill."""
        self.master.kill()
        return time.monotonic()

    def stop(self) -> None:
        self.master.stop()
        self.replica.stop()
        stop_processes(self.sentinel_procs, 10)
