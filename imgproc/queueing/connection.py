"""The Redis connection every part of imgproc uses: the API, the workers and the tools."""

from __future__ import annotations

import redis


def connect(url: str) -> redis.Redis:
    """A Redis client with short timeouts, so an outage is an error and not a hang."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=15, retry_on_timeout=False
    )
