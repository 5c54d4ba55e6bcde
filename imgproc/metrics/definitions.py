"""Every metric imgproc exports: name, kind, help text, labels and (histograms) buckets.

Names follow Prometheus' conventions (``imgproc_`` prefix, base units,
``_total`` counters). Labels are of bounded cardinality: routes, queues,
job types, stages, error codes and outcomes; never a job id, a record id or
a vendor.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER = "counter"
HISTOGRAM = "histogram"

#: Seconds, for jobs and their stages: light jobs take milliseconds, a large photo on a CPU a minute.
JOB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Seconds a job waits for a worker: none to an hour of backlog.
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
#: Seconds of an HTTP request: an enqueue is milliseconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


METRICS = {
    m.name: m
    for m in (
        Metric(
            "imgproc_http_requests_total",
            COUNTER,
            "HTTP requests answered by the API.",
            ("route", "method", "status"),
        ),
        Metric(
            "imgproc_http_request_duration_seconds",
            HISTOGRAM,
            "Time to answer an HTTP request.",
            ("route", "method"),
            HTTP_BUCKETS,
        ),
        Metric("imgproc_jobs_enqueued_total", COUNTER, "Jobs enqueued.", ("queue", "type")),
        Metric("imgproc_jobs_finished_total", COUNTER, "Jobs finished.", ("queue", "type")),
        Metric(
            "imgproc_jobs_failed_total",
            COUNTER,
            "Jobs failed for good (no attempt left).",
            ("queue", "type", "code"),
        ),
        Metric(
            "imgproc_jobs_retried_total",
            COUNTER,
            "Failed attempts that will be retried.",
            ("queue", "type", "code"),
        ),
        Metric(
            "imgproc_job_duration_seconds",
            HISTOGRAM,
            "Time of an attempt, from its start to its end.",
            ("queue", "type"),
            JOB_BUCKETS,
        ),
        Metric(
            "imgproc_job_queue_wait_seconds",
            HISTOGRAM,
            "Time from a job's enqueue to its start.",
            ("queue", "type"),
            WAIT_BUCKETS,
        ),
        Metric(
            "imgproc_job_stage_seconds",
            HISTOGRAM,
            "Time of each stage of a job: fetch, inference (decode and model), layout, encode, upload, save.",
            ("type", "stage"),
            JOB_BUCKETS,
        ),
        Metric(
            "imgproc_megapixels_processed_total", COUNTER, "Megapixels of the photos processed.", ("type",)
        ),
        Metric(
            "imgproc_results_review_total",
            COUNTER,
            "Cut-outs whose confidence is under IMGPROC_REVIEW_THRESHOLD: marked review, for a person.",
            ("type",),
        ),
        Metric(
            "imgproc_webhook_deliveries_total", COUNTER, "Webhook delivery attempts by outcome.", ("outcome",)
        ),
        Metric("imgproc_rate_limited_total", COUNTER, "Requests refused by a rate limit.", ("limit",)),
    )
}
