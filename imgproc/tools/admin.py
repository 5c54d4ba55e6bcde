"""Operator views behind ``imgproc jobs`` and ``imgproc queues``: tables of failed jobs and counts.

Finding and retrying failed jobs is ``imgproc.queueing.retries``, shared with the operator's page.
"""

from __future__ import annotations

from typing import Any

from imgproc.identifiers import shown
from imgproc.queueing.keys import STATES

# Re-exported for the CLI and its tests.
from imgproc.queueing.retries import RetryRefused as RetryRefused
from imgproc.queueing.retries import failed_jobs as failed_jobs
from imgproc.queueing.retries import retry as retry
from imgproc.queueing.retries import retry_failed as retry_failed

#: Longest error message shown in the failed-jobs table; the rest is cut.
MESSAGE_WIDTH = 60
QUEUE_COLUMNS = ("queued", "started", "scheduled", "deferred", "finished", "failed", "workers")
FAILED_HEADERS = ("job id", "queue", "vendor", "record", "type", "attempts", "error", "ended at", "message")


def failed_rows(views: list[dict[str, Any]]) -> list[tuple]:
    """One row of the failed-jobs table per job view, in ``FAILED_HEADERS`` order."""
    rows = []
    for view in views:
        error = view["error"] or {}
        message = " ".join(str(error.get("message", "")).split())
        if len(message) > MESSAGE_WIDTH:
            message = message[: MESSAGE_WIDTH - 3] + "..."
        rows.append(
            (
                view["job_id"],
                view["queue"],
                view["vendor"],
                view["record_id"],
                view["type"],
                view["attempts"],
                error.get("code"),
                view["ended_at"],
                message,
            )
        )
    return rows


def queue_rows(stats: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple]]:
    """Headers and rows of the per-queue table of ``JobQueue.stats``."""
    rows = [(name, *(counts[c] for c in QUEUE_COLUMNS)) for name, counts in stats["queues"].items()]
    return ("queue", *QUEUE_COLUMNS), rows


def vendor_rows(stats: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple]]:
    """Headers and rows of the per-vendor table of ``JobQueue.stats``."""
    # The queue table's order first, then the states only a job has.
    columns = (*(c for c in QUEUE_COLUMNS if c in STATES), *(s for s in STATES if s not in QUEUE_COLUMNS))
    rows = [(name, *(counts.get(c, 0) for c in columns)) for name, counts in stats["vendors"].items()]
    return ("vendor", *columns), rows


def table(headers: tuple[str, ...], rows: list[tuple]) -> str:
    """Plain text columns two spaces apart, numbers aligned right; ``-`` for missing values.

    Control characters are escaped: a record id stored with an escape sequence would drive the terminal.
    """
    cells = [list(headers)] + [["-" if v is None or v == "" else shown(str(v)) for v in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(headers))]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric, strict=True)
        ).rstrip()
        for line in cells
    )
