"""``imgproc workers --status``: every registered worker and the execution provider it really runs."""

from __future__ import annotations

from imgproc.config import Settings
from imgproc.queueing import connect, placement


def show(settings: Settings, out=print) -> int:
    """Print one line per worker (name, state, provider, precision, slots, queues); 1 when there is none."""
    rows = placement.rows(connect(settings.redis_url))
    if not rows:
        out(f"no worker is registered with {settings.redis_url}")
        return 1
    header = ("WORKER", "STATE", "PROVIDER", "PRECISION", "BATCH", "QUEUES")
    table = [header] + [
        (
            r["name"],
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
