"""Which execution provider each worker runs: fields of rq's worker hash, read by /health and the CLI.

A worker writes them with its birth (``ImgprocWorker.serialize``), so they live
and expire with rq's own record of the worker (worker_ttl + 60 s after its last
heartbeat): a worker that died stops being counted without any clean-up.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis
from rq import Worker

from imgproc.jobtypes import QUEUE_WEBHOOKS

#: The worker hash's fields: provider actually active, ISNet precision, job slots (batch).
PROVIDER, PRECISION, BATCH = "imgproc_provider", "imgproc_precision", "imgproc_batch"


def fields(provider: str, precision: str, batch: int) -> dict[str, str]:
    """What a worker adds to its rq hash at birth."""
    return {PROVIDER: provider, PRECISION: precision, BATCH: str(batch)}


def rows(conn: redis.Redis) -> list[dict[str, Any]]:
    """One row per registered worker: name, queues, state and what it runs inference on."""
    workers = Worker.all(connection=conn)
    with conn.pipeline(transaction=False) as pipe:
        for worker in workers:
            pipe.hmget(worker.key, PROVIDER, PRECISION, BATCH)
        placed = pipe.execute()
    found = []
    for worker, (provider, precision, batch) in zip(workers, placed, strict=True):
        found.append(
            {
                "name": worker.name,
                "hostname": worker.hostname,
                "queues": worker.queue_names(),
                "state": str(getattr(worker.get_state(), "value", worker.get_state())),
                # A worker of an older imgproc, or one without a model (webhooks), records none.
                "provider": provider.decode() if provider else None,
                "precision": precision.decode() if precision else None,
                "batch": int(batch) if batch else None,
            }
        )
    return sorted(found, key=lambda w: w["name"])


def tally(found: list[dict[str, Any]]) -> dict[str, int]:
    """How many of ``found`` run on each provider (``none``: no ONNX model, e.g. webhooks)."""
    return dict(Counter(row["provider"] or "none" for row in found))


def summary(conn: redis.Redis) -> dict[str, int]:
    """How many registered image workers run on each provider (webhook workers run no model)."""
    return tally([row for row in rows(conn) if row["queues"] != [QUEUE_WEBHOOKS]])
