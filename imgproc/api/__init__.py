"""The HTTP API (API.md): ``create_app(settings)``.

app.py         create_app: services, hooks, the one error shape, /health, /media
services.py    Services: what the views share (Redis, the database, the queue, vendors, storage)
routes.py      the /api/image-queue blueprint: enqueue, poll, batch, cancel, stats
options.py     job options validated against their job type's schema
ratelimits.py  per-vendor request limits (one Lua call per request on Redis)
"""

from .app import create_app

__all__ = ["create_app"]
