"""``GET /metrics`` (no key): the whole service's figures in Prometheus' text format.

Counters and histograms come from Redis, where every API and worker process
flushes its own (``imgproc.metrics``), so any API process answers for all of
them. Queue depth, running jobs and workers are read from Redis at each
scrape; ``imgproc_redis_up`` says whether that worked. The route reads the
app's own registry (``init_metrics``); the blueprint's app-wide hooks time
every request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from imgproc.metrics.collector import RedisCollector
from imgproc.queueing import pauses

from .services import Services, services

#: The methods counted by name; any other is ``other`` (a made-up method would be a new series per request).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Where ``init_metrics`` keeps the app's CollectorRegistry (one per app: tests build many in a process).
REGISTRY = "imgproc.metrics"


class QueueGauges:
    """Gauges read from Redis at scrape time: per queue depth, running jobs and workers; pauses; Redis up."""

    def __init__(self, svc: Services):
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("imgproc_redis_up", "1 when the API reached Redis during this scrape, else 0.")
        depth = GaugeMetricFamily(
            "imgproc_queue_depth", "Jobs waiting for a worker, fair-share lanes included.", labels=["queue"]
        )
        running = GaugeMetricFamily("imgproc_jobs_running", "Jobs running on a worker.", labels=["queue"])
        workers = GaugeMetricFamily(
            "imgproc_workers", "Worker processes listening on the queue.", labels=["queue"]
        )
        paused = GaugeMetricFamily(
            "imgproc_paused",
            "Queues (kind=queue) and vendors (kind=vendor) paused by an operator.",
            labels=["kind"],
        )
        try:
            for name, load in self.svc.jobs.load().items():
                depth.add_metric([name], load["depth"])
                running.add_metric([name], load["running"])
                workers.add_metric([name], load["workers"])
            for kind, count in pauses.counts(self.svc.conn).items():
                paused.add_metric([kind], count)
            up.add_metric([], 1)
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        yield from (up, depth, running, workers, paused)


bp = Blueprint("metrics", __name__)


def init_metrics(app: Flask, svc: Services) -> None:
    """The app's own registry of what ``/metrics`` reads: each app scrapes its own services."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueGauges(svc))
    registry.register(RedisCollector(svc.conn))
    app.extensions[REGISTRY] = registry


@bp.get("/metrics")
def metrics():
    try:
        body = generate_latest(current_app.extensions[REGISTRY])
    except redis.RedisError:  # the counters are in Redis: say only that it is down
        body = b"# HELP imgproc_redis_up 1 when the API reached Redis.\n# TYPE imgproc_redis_up gauge\n"
        body += b"imgproc_redis_up 0.0\n"
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


@bp.before_app_request
def started() -> None:
    g.started = time.perf_counter()


@bp.after_app_request
def timed(response: Response) -> Response:
    # The route's pattern, never the path: job ids would make one series per job.
    route = request.url_rule.rule if request.url_rule else "unmatched"
    method = request.method if request.method in METHODS else "other"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    recorder = services().metrics
    recorder.inc(
        "imgproc_http_requests_total",
        route=route,
        method=method,
        status=str(response.status_code),
    )
    recorder.observe("imgproc_http_request_duration_seconds", elapsed, route=route, method=method)
    return response
