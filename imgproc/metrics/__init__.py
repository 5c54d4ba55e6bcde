"""Metrics: recorded by every process into Redis, exported by the API on ``/metrics``.

definitions.py  every metric: name, help, labels, buckets
recorder.py     Recorder: added up in memory, flushed to Redis once a second
collector.py    RedisCollector: the flushed figures as Prometheus metric families
"""

from .definitions import METRICS
from .recorder import Discard, Metrics, Recorder

__all__ = ["METRICS", "Discard", "Metrics", "Recorder"]
