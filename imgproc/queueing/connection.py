"""The Redis connection every part of imgproc uses: the API, the workers and the tools.

With ``REDIS_SENTINELS`` set, the connection is to whichever server the
sentinels name master of ``REDIS_SENTINEL_MASTER``: a connection that fails
(the master died) or meets a replica (it was demoted) asks the sentinels again,
so a failover is a few failed commands, not a restart. ``REDIS_URL`` then gives
only the database number and the password (of the master and the sentinels).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from imgproc.config import Settings

#: Short timeouts, so an outage is an error and not a hang.
TIMEOUTS = {"socket_connect_timeout": 3, "socket_timeout": 10}
#: Connections one client's pool may open (it opens them as they are needed). redis-py's default of 100
#: fails the 101st request in flight at once (``MaxConnectionsError``), below the 1,024 threads of an API
#: process (``deploy/gunicorn.conf.py``), each of which uses one connection at a time.
MAX_CONNECTIONS = 2048


def connect(url: str) -> redis.Redis:
    """A Redis client for ``url``."""
    return redis.Redis.from_url(
        url, **TIMEOUTS, health_check_interval=15, retry_on_timeout=False, max_connections=MAX_CONNECTIONS
    )


def sentinel_addresses(sentinels: tuple[str, ...]) -> list[tuple[str, int]]:
    """``host:port`` (or ``[v6]:port``) entries as (host, port); port 26379 when left out."""
    addresses = []
    for entry in sentinels:
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest.lstrip(":")
        elif ":" in entry:
            host, _, port = entry.rpartition(":")
        else:
            host, port = entry, ""
        addresses.append((host, int(port or 26379)))
    return addresses


def url_auth(url: str) -> dict:
    """The database number, user and password of a ``redis://`` URL."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    auth: dict = {"db": int(path) if path.isdigit() else 0}
    if parts.username:
        auth["username"] = unquote(parts.username)
    if parts.password:
        auth["password"] = unquote(parts.password)
    return auth


def redis_for(settings: Settings) -> redis.Redis:
    """The client of ``settings``: the sentinels' master when ``redis_sentinels`` is set."""
    if not settings.redis_sentinels:
        return connect(settings.redis_url)
    auth = url_auth(settings.redis_url)
    credentials = {k: v for k, v in auth.items() if k != "db"}
    sentinel = Sentinel(
        sentinel_addresses(settings.redis_sentinels),
        sentinel_kwargs={**TIMEOUTS, **credentials},
        **TIMEOUTS,
    )
    return sentinel.master_for(
        settings.redis_sentinel_master,
        **auth,
        health_check_interval=15,
        retry_on_timeout=False,
        max_connections=MAX_CONNECTIONS,
    )
