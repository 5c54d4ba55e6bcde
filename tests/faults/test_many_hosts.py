"""Three hosts for real on this machine: Redis and the API on one, a worker on each of the two others.

The hosts are network namespaces on a bridge (``tests/faults/netns.py``), each
with its own address. What they share is what real hosts would reach over the
network, except the disk: the SQLite file and the local storage lie on this
machine's filesystem, which every namespace sees (MariaDB here listens on the
root namespace's 127.0.0.1, out of the hosts' reach; on real hosts use MariaDB
and Cloudinary or an S3-compatible store).
"""

import os
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis as redis_lib
from rq.job import Job

from imgproc.testing import LocalStack, free_port, local_env, wait_for
from tests.faults.netns import Host, Network, network  # noqa: F401 (the fixture)

# 40-160 s on 2 cores, and at the mercy of a loaded machine's timing: `make soak` runs it.
pytestmark = pytest.mark.skipif(
    not os.environ.get("IMGPROC_SOAK"), reason="three hosts in network namespaces: run by `make soak`"
)


class HostStack(LocalStack):
    """``LocalStack`` whose next processes start on ``host`` (inside its network namespace)."""

    host: Host | None = None

    def spawn(self, name, command, env, **options):
        return super().spawn(name, self.host.command(*command) if self.host else command, env, **options)


def host_of(conn: redis_lib.Redis, worker_name: str, procs: dict) -> str:
    """The host of a worker: by name, or by process (a worker back from an outage has a new name)."""
    for host, proc in procs.items():
        if proc.name == worker_name:
            return host
    fields = conn.hgetall(f"rq:worker:{worker_name}")
    hosts = [host for host, proc in procs.items() if proc.pid == int(fields.get(b"pid", 0))]
    assert hosts, (worker_name, fields)
    return hosts[0]


@pytest.mark.timeout(600)
def test_jobs_spread_survive_a_cut_host_and_the_host_rejoins(network, tmp_path, photos, monkeypatch):  # noqa: F811
    hub, host_a, host_b = (network.add_host(name) for name in ("hub", "host-a", "host-b"))
    workers_hosts = [host_a, host_b]
    www = tmp_path / "www"
    www.mkdir()
    (www / "astronaut.jpg").write_bytes(photos["astronaut"])
    (www / "coffee.jpg").write_bytes(photos["coffee"])

    monkeypatch.setenv("REDIS_URL", f"redis://{hub.address}:6379/0")
    env = {
        **local_env(tmp_path / "var"),
        "IMGPROC_FETCH_ALLOW_HOSTS": "10.231.0.0/16",
        # A job is abandoned 3 missed beats (6 s) after its host went silent; 1 s beats flapped under load.
        "IMGPROC_HEARTBEAT_INTERVAL": "2",
        "IMGPROC_MAINTENANCE_INTERVAL": "2",
        "IMGPROC_RETRY_BACKOFF": "1",
    }
    with HostStack(tmp_path / "var", env) as stack:
        stack.host = hub
        redis_server = stack.spawn(
            "redis",
            [shutil.which("redis-server"), "--bind", hub.address, "--port", "6379", "--dir", str(tmp_path)]
            + ["--appendonly", "yes", "--save", "", "--protected-mode", "no"],
            stack.env,
        )
        conn = redis_lib.Redis(host=hub.address, port=6379, socket_timeout=5)
        wait_for(conn.ping, 10, "Redis on the hub", [redis_server])
        photo_port = free_port()
        stack.spawn(
            "photos",
            [sys.executable, "-m", "http.server", "--bind", hub.address, str(photo_port), "-d", str(www)],
            stack.env,
        )
        photo = lambda name: f"http://{hub.address}:{photo_port}/{name}"  # noqa: E731
        stack.api = f"http://{hub.address}:{free_port()}"
        stack.env["IMGPROC_PUBLIC_URL"] = stack.api
        key = stack.add_vendor("acme")
        procs = {}
        for host in workers_hosts:
            stack.host = host
            (procs[host.name],) = stack.start_workers(1, "bg-removal,image-processing")
        stack.host = hub
        stack.start_api(processes=2)
        stack.wait_workers(list(procs.values()), timeout=120)
        client = stack.client(key)

        def light(prefix: str, n: int) -> Counter:
            """``n`` light jobs; how many each host ran."""
            ids = [
                client.submit("process-image", photo("coffee.jpg"), record_id=f"{prefix}{i}").id
                for i in range(n)
            ]
            wait_for(
                lambda: all(client.job(i).state == "finished" for i in ids),
                60,
                f"{n} light jobs",
                interval=0.2,
            )
            return Counter(host_of(conn, Job.fetch(i, connection=conn).worker_name, procs) for i in ids)

        spread = light("spread", 20)
        assert set(spread) == {"host-a", "host-b"}, spread

        # A job in the middle of its inference when its host is cut off.
        job_id = client.submit("remove-bg", photo("astronaut.jpg"), record_id="cut").id
        poll = lambda: client.job(job_id)  # noqa: E731
        wait_for(lambda: poll().stage == "inference", 60, "the job's inference", interval=0.05)
        victim = next(
            h
            for h in workers_hosts
            if h.name == host_of(conn, Job.fetch(job_id, connection=conn).worker_name, procs)
        )
        survivor = next(h for h in workers_hosts if h is not victim)
        network.cut(victim)
        cut_at = time.monotonic()
        wait_for(lambda: poll().state != "started", 60, "the abandoned job to be noticed", interval=0.2)
        noticed = time.monotonic() - cut_at
        job = wait_for(
            lambda: (j := poll()).state in ("finished", "failed") and j,
            90,
            "the job's retry",
            interval=0.2,
        )
        recovered = time.monotonic() - cut_at
        assert job.state == "finished" and job.attempts == 2, job
        final = Job.fetch(job_id, connection=conn)
        assert host_of(conn, final.worker_name, procs) == survivor.name
        # Its host keeps running, alone: its attempt ends on Redis's silence (10 s socket timeout).
        victim_log = Path(procs[victim.name].log_path)
        wait_for(
            lambda: re.search("Redis unreachable.*trying again", victim_log.read_text()),
            # Its inference ends, then each Redis call of the job's end waits out the socket timeout.
            240,
            "the cut worker to give up",
        )

        network.restore(victim)
        restored_at = time.monotonic()

        def back() -> bool:
            names = [w.decode().removeprefix("rq:worker:") for w in conn.smembers("rq:workers")]
            fresh = [n for n in names if n != procs[victim.name].name and conn.exists(f"rq:worker:{n}")]
            return victim.name in {host_of(conn, n, procs) for n in fresh}

        wait_for(back, 60, "the cut host's worker to register again", interval=0.2)
        rejoined = time.monotonic() - restored_at
        after = light("after", 20)
        assert after[victim.name] >= 1, after
        assert all(p.poll() is None for p in procs.values())  # the same processes: no restart

        # Effects once: one write of the record, one stored result, and the job still as the survivor left it.
        from imgproc.adapters.db import make_engine
        from imgproc.adapters.records import Records

        engine = make_engine(stack.settings())
        row = Records(engine).get("acme", "cut")
        engine.dispose()
        assert row["writes"] == 1 and job.result.url.endswith(row["bg_removed_url"])
        stored = list((tmp_path / "var" / "media" / "acme" / job_id).iterdir())
        assert len(stored) == 1, stored
        now = poll()
        assert now.state == "finished" and now.attempts == 2
        print(
            f"\nhosts: hub {hub.address} (Redis, API, photos), {host_a.name} {host_a.address}, "
            f"{host_b.name} {host_b.address}; 20 light jobs per host: {dict(spread)}; "
            f"{victim.name} cut during inference: its job abandoned (heartbeat lapsed) {noticed:.1f} s after "
            f"the cut, finished on {survivor.name} {recovered:.1f} s after it; "
            f"{victim.name} back: its worker "
            f"registered again {rejoined:.1f} s after the link came up (same process); "
            f"20 light jobs after: {dict(after)}"
        )
