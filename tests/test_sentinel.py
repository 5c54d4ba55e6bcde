"""Redis through Sentinel: the settings, what each part connects with, and the worker's scheduler."""

import pickle

import pytest
from redis.sentinel import SentinelConnectionPool

from imgproc.adapters.urls import own_service_ports
from imgproc.config import Settings
from imgproc.queueing import redis_for
from imgproc.queueing.connection import sentinel_addresses, url_auth
from imgproc.worker.scheduler import SpawnedScheduler

SENTINELS = {
    "REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380,[fd00::3]:26381",
    "REDIS_SENTINEL_MASTER": "main",
}


def test_settings_read_the_sentinels():
    settings = Settings.from_env({**SENTINELS, "REDIS_URL": "redis://:s3cret@ignored:1/4"})
    assert settings.redis_sentinels == ("10.0.0.1:26379", "10.0.0.2:26380", "[fd00::3]:26381")
    assert settings.redis_sentinel_master == "main"
    assert sentinel_addresses(settings.redis_sentinels) == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("fd00::3", 26381),
    ]
    assert sentinel_addresses(("redis-sentinel",)) == [("redis-sentinel", 26379)]
    assert url_auth(settings.redis_url) == {"db": 4, "password": "s3cret"}


def test_every_client_goes_through_the_sentinels():
    settings = Settings.from_env({**SENTINELS, "REDIS_URL": "redis://127.0.0.1:6379/4"})
    conn = redis_for(settings)
    pool = conn.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "main"
    assert pool.connection_kwargs["db"] == 4
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [
        26379,
        26380,
        26381,
    ]
    # No vendor URL reaches a sentinel.
    assert {26379, 26380, 26381} <= own_service_ports(settings)


def test_without_sentinels_nothing_changes():
    settings = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/2"})
    assert not isinstance(redis_for(settings).connection_pool, SentinelConnectionPool)


@pytest.mark.parametrize("sentinels", [(), ("127.0.0.1:26379",)])
def test_the_scheduler_can_be_spawned(sentinels):
    """rq's scheduler is pickled into a fresh interpreter; a Sentinel pool's proxy cannot be pickled."""
    settings = Settings(redis_url="redis://127.0.0.1:6379/3", redis_sentinels=sentinels)
    scheduler = SpawnedScheduler(["image-processing"], connection=redis_for(settings), settings=settings)
    scheduler._connection = None  # as start() leaves it
    child = pickle.loads(pickle.dumps(scheduler))
    pool = child.connection.connection_pool
    assert isinstance(pool, SentinelConnectionPool) == bool(sentinels)
    assert pool.connection_kwargs["db"] == 3
