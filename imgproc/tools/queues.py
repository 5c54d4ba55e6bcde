"""``imgproc queues``: the counts of every queue and every vendor, and the workers of each queue."""

from __future__ import annotations

from typing import Any

from imgproc.config import Settings

from .tables import table

QUEUE_COLUMNS = ("queued", "started", "scheduled", "deferred", "finished", "failed", "workers")


def add_parser(sub) -> None:
    """The ``queues`` subcommand on the ``imgproc`` parser's subparsers."""
    queues = sub.add_parser("queues", help="counts per queue and per vendor, and workers")
    queues.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    from imgproc.queueing import JobQueue, redis_for

    stats = JobQueue(redis_for(settings), settings).stats("", operator=True)
    print(table(*queue_rows(stats)))
    print()
    if stats["vendors"]:
        print(table(*vendor_rows(stats)))
    else:
        print("no vendor has jobs")
    return 0


def queue_rows(stats: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple]]:
    """Headers and rows of the per-queue table of ``JobQueue.stats``."""
    rows = [(name, *(counts[c] for c in QUEUE_COLUMNS)) for name, counts in stats["queues"].items()]
    return ("queue", *QUEUE_COLUMNS), rows


def vendor_rows(stats: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple]]:
    """Headers and rows of the per-vendor table of ``JobQueue.stats``."""
    from imgproc.queueing.keys import STATES

    # The queue table's order first, then the states only a job has.
    columns = (*(c for c in QUEUE_COLUMNS if c in STATES), *(s for s in STATES if s not in QUEUE_COLUMNS))
    rows = [(name, *(counts.get(c, 0) for c in columns)) for name, counts in stats["vendors"].items()]
    return ("vendor", *columns), rows
