"""The ``/metrics`` side: what every process recorded in Redis, as prometheus_client metric families."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from .definitions import COUNTER, METRICS
from .recorder import KEY_METRIC


class RedisCollector:
    """A prometheus_client collector of the counters and histograms every process flushed to Redis."""

    def __init__(self, conn: redis.Redis):
        self.conn = conn

    def collect(self) -> Iterator[Metric]:
        with self.conn.pipeline(transaction=False) as pipe:
            for name in METRICS:
                pipe.hgetall(KEY_METRIC.format(name))
            stored = dict(zip(METRICS, pipe.execute(), strict=True))
        for name, metric in METRICS.items():
            fields = {k.decode(): float(v) for k, v in stored[name].items()}
            if metric.kind == COUNTER:
                family = CounterMetricFamily(name.removesuffix("_total"), metric.help, labels=metric.labels)
                for field, value in sorted(fields.items()):
                    family.add_metric(json.loads(field), value)
                yield family
                continue
            family = HistogramMetricFamily(name, metric.help, labels=metric.labels)
            series: defaultdict[str, dict[str, float]] = defaultdict(dict)
            for field, value in fields.items():
                labels, _, part = field.rpartition("|")
                series[labels][part] = value
            for labels, parts in sorted(series.items()):
                cumulative, buckets = 0.0, []
                for bound in metric.buckets:
                    cumulative += parts.get(repr(float(bound)), 0.0)
                    buckets.append((_bound(bound), cumulative))
                buckets.append(("+Inf", parts.get("count", 0.0)))
                family.add_metric(json.loads(labels), buckets, parts.get("sum", 0.0))
            yield family


def _bound(value: float) -> str:
    return repr(float(value))
