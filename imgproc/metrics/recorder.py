"""Recording metrics in any process: added up in memory, flushed to Redis about once a second.

Every API and worker process, on any host, adds its counts to the same Redis
hashes, so whichever API process answers ``/metrics`` reports the whole
service (``imgproc.metrics.collector``). prometheus_client's own multiprocess
mode shares a folder of files, one host only, and would leave out the workers
of every other host. Adding up in memory keeps the cost per job or request
to a few dictionary updates (one Redis pipeline a second per process instead
of one per event); a process killed without warning loses at most its last
second.
"""

from __future__ import annotations

import atexit
import bisect
import json
import logging
import os
import threading
import weakref
from collections import defaultdict
from typing import Protocol

import redis

from .definitions import HISTOGRAM, METRICS

log = logging.getLogger("imgproc.metrics")

KEY_METRIC = "imgproc:metrics:{}"


class Metrics(Protocol):
    """Where a process records its figures: a ``Recorder``, or ``Discard`` in tests that do not count."""

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None: ...

    def observe(self, name: str, value: float, **labels: str) -> None: ...

    def close(self) -> None: ...

    def flush(self) -> None: ...


class Discard:
    """Records nothing."""

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        pass

    def observe(self, name: str, value: float, **labels: str) -> None:
        pass

    def close(self) -> None:
        pass

    def flush(self) -> None:
        pass


def label_key(labels: tuple[str, ...]) -> str:
    """The hash field of one label set (its values, in the metric's label order)."""
    return json.dumps(labels, separators=(",", ":"))


class Recorder:
    """Counters and histograms of one process, flushed to Redis by ``flush`` (and a thread, once started)."""

    def __init__(self, conn: redis.Redis, interval: float = 1.0):
        self.conn = conn
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: defaultdict[tuple[str, str], float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def _values(self, name: str, labels: dict[str, str]) -> tuple[str, ...]:
        metric = METRICS[name]
        if set(labels) != set(metric.labels):
            raise ValueError(f"{name} takes the labels {metric.labels}, not {tuple(labels)}")
        return tuple(str(labels[label]) for label in metric.labels)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to a counter."""
        field = label_key(self._values(name, labels))
        self._after_fork()
        with self._lock:
            self._pending[(name, field)] += amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Count one observation of a histogram (in its bucket, its sum and its count)."""
        metric = METRICS[name]
        assert metric.kind == HISTOGRAM, name
        field = label_key(self._values(name, labels))
        bucket = bisect.bisect_left(metric.buckets, value)  # le: the first bound >= value
        le = repr(float(metric.buckets[bucket])) if bucket < len(metric.buckets) else "+Inf"
        self._after_fork()
        with self._lock:
            self._pending[(name, f"{field}|{le}")] += 1
            self._pending[(name, f"{field}|sum")] += value
            self._pending[(name, f"{field}|count")] += 1

    def flush(self) -> None:
        """Send what was added up since the last flush; kept for the next one if Redis is away."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        if not pending:
            return
        try:
            # One transaction: a scrape never sees a histogram's bucket without its count.
            with self.conn.pipeline(transaction=True) as pipe:
                for (name, field), amount in pending.items():
                    pipe.hincrbyfloat(KEY_METRIC.format(name), field, amount)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics not flushed, Redis unreachable: %s", exc)
            with self._lock:
                for key, amount in pending.items():
                    self._pending[key] += amount

    def _after_fork(self) -> None:
        # A process forked after start (gunicorn --preload) has no flushing thread: start its own.
        if self._thread is not None and self._pid != os.getpid():
            self._pid, self._thread, self._stop = os.getpid(), None, threading.Event()
            self._lock = threading.Lock()
            self._pending = defaultdict(float)  # the parent's counts are the parent's to flush
            self.start()

    def start(self) -> Recorder:
        """Flush every ``interval`` seconds in a daemon thread, and once more at exit.

        The thread holds the recorder weakly: a recorder nobody uses any more
        (an app of a test) is flushed and its thread ends.
        """
        if self._thread is None:
            self._thread = threading.Thread(
                target=_flush_every,
                args=(weakref.ref(self), self._stop, self.interval),
                name="metrics",
                daemon=True,
            )
            self._thread.start()
            atexit.register(_close, weakref.ref(self))
        return self

    def close(self) -> None:
        """Stop the thread and flush what is left."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush()

    def __del__(self) -> None:
        self._stop.set()  # nothing flushed here: a connection opened while Python tears down leaks


def _flush_every(ref: weakref.ref, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        recorder = ref()
        if recorder is None:
            return
        recorder.flush()
        del recorder


def _close(ref: weakref.ref) -> None:
    recorder = ref()
    if recorder is not None:
        recorder.close()
