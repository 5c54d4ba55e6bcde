"""gunicorn for the imgproc API in production: ``gunicorn -c deploy/gunicorn.conf.py api:app``.

Threads (gthread), not gevent: an event stream (``/events``) holds one thread
while it waits on Redis, and a thread that waits costs no CPU, while gevent
would need redis-py and SQLAlchemy's driver monkey-patched.
Figures behind ``threads`` are in the README ("Live events"), measured with
``python -m bench.streams``. Flags on the command line override this file
(``-b``, ``-w``, ``--threads``).
"""

import multiprocessing

bind = "0.0.0.0:8000"
worker_class = "gthread"
#: One process per core: each runs Python, so more processes than cores only add switching.
workers = multiprocessing.cpu_count()
#: Requests in flight per process, open event streams included (each holds a thread until its job ends).
#: Measured: 2,000 open streams in one process, another vendor's enqueue p99 0.90x of none, the streams
#: 9% of a core (README, "Live events"); one vendor opens at most IMGPROC_MAX_STREAMS_PER_VENDOR (50).
threads = 1024
#: Connections a process accepts: streams, requests in flight and idle kept-alive ones (gunicorn's
#: default of 1,000 refused new connections once 1,000 streams were open).
worker_connections = 2048
#: gthread's own heartbeat does not wait on requests: a long stream is never killed as a stuck worker.
timeout = 30
graceful_timeout = 30
keepalive = 5
#: Connections beyond the threads wait in the listen queue rather than being refused.
backlog = 2048
# Access log off: a line per request is a measurable share of an enqueue; `--access-logfile -` turns it on.

#: X-Forwarded-Proto is believed by the API only behind IMGPROC_TRUSTED_PROXIES proxies (werkzeug's ProxyFix,
#: with X-Forwarded-Host and -Port); gunicorn's own trust of it from 127.0.0.1 would let any local client
#: make results' URLs https.
secure_scheme_headers = {}

# gunicorn 25+'s control socket (for `gunicornc`) sits in $HOME/.gunicorn: one path for every gunicorn
# of a user on the host, and unwritable on the images' read-only root. Nothing here uses it.
control_socket_disable = True
