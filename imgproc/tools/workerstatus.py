"""``imgproc workers --status``: every registered worker and the execution provider it really runs.

``python -m imgproc.tools.workerstatus --healthy`` is the GPU image's HEALTHCHECK.
"""

from __future__ import annotations

import socket
import sys

from imgproc.config import Settings
from imgproc.queueing import placement, redis_for


def show(settings: Settings, out=print) -> int:
    """Print one line per worker (name, host, state, provider, precision, slots, queues); 1 when none.

    HOST is the worker's hostname: in a container, the container's, so an operator can tell which
    replica runs what (`docker compose ps`, `docker kill`).
    """
    rows = placement.rows(redis_for(settings))
    if not rows:
        out(f"no worker is registered with {settings.redis_url}")
        return 1
    header = ("WORKER", "HOST", "STATE", "PROVIDER", "PRECISION", "BATCH", "QUEUES")
    table = [header] + [
        (
            r["name"],
            r["hostname"] or "-",
            r["state"],
            r["provider"] or "-",
            r["precision"] or "-",
            str(r["batch"] or "-"),
            ",".join(r["queues"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    summary = ", ".join(f"{n} on {p}" for p, n in placement.tally(rows).items())
    out(f"{len(rows)} worker(s): {summary}")
    return 0


def healthy(settings: Settings, hostname: str | None = None, out=print) -> int:
    """0 when a worker of this host is registered (on CUDA, if IMGPROC_DEVICE=cuda asks for it), else 1."""
    hostname = hostname or socket.gethostname()
    try:
        mine = [r for r in placement.rows(redis_for(settings)) if r["hostname"] == hostname]
    except Exception as exc:  # noqa: BLE001 - any failure to read Redis is "unhealthy", said in words
        out(f"unhealthy: cannot read the workers from Redis: {exc}")
        return 1
    if not mine:
        out(f"unhealthy: no worker of host {hostname} is registered")
        return 1
    if settings.device == "cuda" and any(r["provider"] != "CUDAExecutionProvider" for r in mine):
        out(f"unhealthy: IMGPROC_DEVICE=cuda but {[(r['name'], r['provider']) for r in mine]}")
        return 1
    out(f"healthy: {len(mine)} worker(s) on {', '.join(sorted({r['provider'] or 'none' for r in mine}))}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--healthy"]:
        sys.exit("usage: python -m imgproc.tools.workerstatus --healthy")
    sys.exit(healthy(Settings.from_env()))
