"""``imgproc jobs failed | retry``: the failed jobs, and requeueing them.

Finding and retrying failed jobs is ``imgproc.queueing.retries``, shared with the operator's page.
"""

from __future__ import annotations

import sys
from typing import Any

from imgproc import identifiers
from imgproc.config import Settings
from imgproc.jobtypes import QUEUES

from .tables import table

#: Longest error message shown in the failed-jobs table; the rest is cut.
MESSAGE_WIDTH = 60
FAILED_HEADERS = ("job id", "queue", "vendor", "record", "type", "attempts", "error", "ended at", "message")


def add_parser(sub) -> None:
    """The ``jobs`` subcommand on the ``imgproc`` parser's subparsers."""
    jobs = sub.add_parser("jobs", help="list and retry failed jobs")
    jsub = jobs.add_subparsers(dest="action", required=True)
    failed = jsub.add_parser("failed", help="list failed jobs, newest first")
    retry = jsub.add_parser(
        "retry",
        help="requeue failed jobs",
        description="Requeue failed jobs with rq's requeue: the error and any earlier output are cleared and "
        "the job gets a fresh set of attempts (its attempt count is kept). A retried job goes "
        "straight to its RQ queue, not through its vendor's fair-share lane: it already had its turn.",
    )
    retry.add_argument("ids", nargs="*", metavar="ID", help="job ids to requeue")
    retry.add_argument(
        "--all-failed", action="store_true", help="requeue every failed job (of --queue, --vendor)"
    )
    for parser_ in (failed, retry):
        parser_.add_argument("--queue", choices=QUEUES, help="only this queue")
        parser_.add_argument("--vendor", help="only this vendor's jobs")
    failed.add_argument("--limit", type=int, default=50, help="most jobs shown, 0 for all (default: 50)")
    jobs.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    from imgproc.queueing import JobQueue, redis_for
    from imgproc.queueing.retries import RetryRefused, failed_jobs, retry, retry_failed
    from imgproc.queueing.state import JobState

    jobs = JobQueue(redis_for(settings), settings)
    if args.action == "failed":
        views = failed_jobs(jobs, queue=args.queue, vendor=args.vendor)
        if not views:
            print("no failed jobs")
            return 0
        shown = views[: args.limit] if args.limit > 0 else views
        print(table(FAILED_HEADERS, failed_rows(shown)))
        if len(shown) < len(views):
            print(f"({len(shown)} of {len(views)} failed jobs shown; --limit 0 shows all)")
        return 0
    if bool(args.ids) == args.all_failed or (args.ids and (args.queue or args.vendor)):
        print("error: give job ids, or --all-failed (optionally with --queue/--vendor)", file=sys.stderr)
        return 2
    if args.all_failed:
        requeued, refused = retry_failed(jobs, queue=args.queue, vendor=args.vendor)
    else:
        requeued, refused = [], []
        for job_id in args.ids:
            try:
                requeued.append(retry(jobs, job_id))
            except RetryRefused as exc:
                refused.append(str(exc))
    for job in requeued:
        state = JobState.of(job)
        record = identifiers.shown(f"{state.vendor}/{state.record_id}")
        print(f"requeued {job.id}  {job.origin}  {record}")
    for message in refused:
        print(f"error: {message}", file=sys.stderr)
    if args.all_failed and not requeued and not refused:
        print("no failed jobs")
    elif requeued:
        print(f"{len(requeued)} job{'s' if len(requeued) != 1 else ''} requeued")
    return 1 if refused else 0


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
