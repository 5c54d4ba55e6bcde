"""Per-vendor request limits with flask-limiter, counted in Redis so every API process shares them.

The vendor comes from the API key (``g.vendor``, set by the authentication
hook that runs before the limiter's), never from a header a client chooses.
If Redis is down the limiter raises, and the API answers 503: requests are
never let through unlimited (no in-memory fallback, errors not swallowed).
"""

from __future__ import annotations

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter
from limits import parse

from imgproc.config import Settings
from imgproc.queueing.connection import url_auth


def storage_uri(settings: Settings) -> str:
    """The limits library's name for the same Redis (it spells sockets ``redis+unix://``)."""
    if settings.redis_sentinels:
        return f"redis+sentinel://{','.join(settings.redis_sentinels)}/{settings.redis_sentinel_master}"
    url = settings.redis_url
    return "redis+" + url if url.startswith("unix://") else url


def storage_options(settings: Settings) -> dict:
    """Timeouts; through Sentinel also the database and password of ``REDIS_URL`` (as ``redis_for``)."""
    options: dict = {"socket_connect_timeout": 3, "socket_timeout": 5}
    if settings.redis_sentinels:
        # Counts read from a replica lag behind: every read of a limit goes to the master too.
        options.update(url_auth(settings.redis_url), use_replicas=False)
    return options


def _vendor() -> str:
    return g.vendor.name


def _not_api() -> bool:
    # A signed-in page's reads (its lists, event streams) do not use up the vendor's requests.
    reading = g.get("via_session") and request.method in ("GET", "HEAD")
    return not request.path.startswith("/api/") or bool(reading)


def _retry_after_only_when_refused(response: Response) -> Response:
    # flask-limiter sets Retry-After on every answer it counts; on a 202 it reads as "come back later".
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def _accepted(response: Response) -> bool:
    return response.status_code < 400


def build_limiter(app: Flask, settings: Settings) -> Limiter:
    """A limiter for ``app`` with the all-requests limit; routes add their own with ``limit``."""
    # Registered before the limiter's own hook, so it runs after it (Flask runs them last-in first).
    app.after_request(_retry_after_only_when_refused)
    return Limiter(
        key_func=_vendor,
        app=app,
        storage_uri=storage_uri(settings),
        storage_options=storage_options(settings),
        # A moving window counts exactly and, unlike a fixed window, a refused bulk uses up nothing.
        strategy="moving-window",
        key_prefix="imgproc",
        headers_enabled=True,
        retry_after="delta-seconds",
        swallow_errors=False,
        in_memory_fallback_enabled=False,
        # An application limit is one counter for all routes (a default limit counts per route).
        application_limits=[
            ApplicationLimit(
                settings.limit_global,
                exempt_when=_not_api,
                error_message=f"request limit of {parse(settings.limit_global)} reached",
            )
        ],
    )


def limit(limiter: Limiter, value: str, scope: str, **kwargs):
    """A limit shared by every endpoint it decorates, on top of the all-requests limit.

    Only accepted requests use it up: one refused with 400, 413, 415 or 429
    enqueued nothing, and counts against the all-requests limit alone.
    """
    return limiter.shared_limit(
        value,
        scope=scope,
        override_defaults=False,
        deduct_when=_accepted,
        error_message=f"{scope} limit of {parse(value)} reached",
        **kwargs,
    )
