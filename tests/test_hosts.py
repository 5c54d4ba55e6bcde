"""Replicas that do not know about each other share a host's cores: they count themselves through Redis."""

import os
import re
import time

import pytest

from imgproc.queueing.hosts import KEY_HOST, TTL, HostPeers, host_id


def test_a_host_counts_its_live_workers(redis_conn, tmp_path):
    first, second = HostPeers(redis_conn, "a:1", host="h1"), HostPeers(redis_conn, "b:2", host="h1")
    elsewhere = HostPeers(redis_conn, "c:3", host="h2")
    assert first.beat() == 1
    assert second.beat() == 2 and first.beat() == 2
    assert elsewhere.beat() == 1  # another machine's workers are not this one's siblings
    second.leave()
    assert first.beat() == 1
    # A worker killed without leaving stops counting once its last beat is older than TTL.
    redis_conn.zadd(KEY_HOST.format("h1"), {"killed:4": time.time() - TTL - 1})
    assert first.beat() == 1 and 0 < redis_conn.ttl(KEY_HOST.format("h1")) <= TTL
    # The host is the running kernel, which containers share; the host name where /proc has none.
    boot = tmp_path / "boot_id"
    boot.write_text("3f1c5e4a-0000-4000-8000-000000000001\n")
    assert host_id(boot) == "3f1c5e4a-0000-4000-8000-000000000001"
    assert host_id(tmp_path / "missing") == os.uname().nodename


def _start(settings, name):
    from tests.conftest import process_env

    env = process_env(settings)
    env.pop("IMGPROC_WORKERS_PER_HOST", None)  # started as a plain `python worker.py`: the defaults
    env.pop("IMGPROC_THREADS", None)
    from imgproc.testing import WorkerProcess

    return WorkerProcess.start(env, "bg-removal", name, settings.storage_dir)  # its log: settings_log


def settings_log(settings, name):
    return os.path.join(settings.storage_dir, f"{name}.log")


def _wait_for(settings, name, pattern, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(settings_log(settings, name)) as f:
            found = re.search(pattern, f.read())
        if found:
            return found
        time.sleep(0.2)
    with open(settings_log(settings, name)) as f:
        raise AssertionError(f"{name} never logged {pattern!r}:\n{f.read()[-3000:]}")


@pytest.mark.timeout(300)
def test_replicas_started_one_by_one_share_the_cores(settings, redis_conn, photo_server, photos):
    """Two plain `python worker.py`: the second makes both take half the cores, leaving gives them back."""
    from imgproc.api.options import validate
    from imgproc.jobtypes import Payload
    from imgproc.queueing import JobQueue, NewJob

    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    os.makedirs(settings.storage_dir, exist_ok=True)
    first = _start(settings, "first")
    second = None
    try:
        _wait_for(settings, "first", rf"loaded isnet-general-use .* \({cores} threads")
        second = _start(settings, "second")
        _wait_for(settings, "second", rf"loaded isnet-general-use .* \({half} threads")
        # The first counts again within a few seconds while idle, and rebuilds its sessions.
        _wait_for(
            settings, "first", rf"2 inference worker\(s\) on this host: sessions rebuilt with {half} thr"
        )
        # A job on rebuilt sessions comes out right (either worker may take it).
        photo_server.serve("/astronaut.jpg", photos["astronaut"])
        options = validate("remove-bg", {}, settings)
        payload = Payload("acme", "remove-bg", "r1", options, image_url=photo_server.url("/astronaut.jpg"))
        _, (job,) = JobQueue(redis_conn, settings).enqueue([NewJob(payload)])
        deadline = time.monotonic() + 120
        while job.get_status(refresh=True) not in ("finished", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job.get_status() == "finished", job.meta
        second.terminate()
        assert second.wait(60) == 0
        _wait_for(
            settings, "first", rf"1 inference worker\(s\) on this host: sessions rebuilt with {cores} thr"
        )
        assert not redis_conn.zscore(KEY_HOST.format(host_id()), f"{os.uname().nodename}:{second.pid}")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(60)
