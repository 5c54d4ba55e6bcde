"""``imgproc jobs failed | retry | find | cancel | reindex``: failed jobs, jobs by filter, acting on many.

Finding and retrying failed jobs is ``imgproc.queueing.retries``, shared with the operator's page; a
filter's jobs are ``imgproc.queueing.search`` and acting on them ``imgproc.queueing.bulk``, as the
API's ``GET /jobs`` and ``POST /jobs/cancel|retry`` find and act.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from imgproc import identifiers
from imgproc.config import Settings
from imgproc.errors import InvalidRequest
from imgproc.jobtypes import JOB_TYPES, QUEUES
from imgproc.queueing.keys import STATES

from .tables import table

#: Longest error message shown in the failed-jobs table; the rest is cut.
MESSAGE_WIDTH = 60
FAILED_HEADERS = ("job id", "queue", "vendor", "record", "type", "attempts", "error", "ended at", "message")
FOUND_HEADERS = ("job id", "vendor", "record", "type", "state", "created at", "error")
#: The filter's options: (option, JobFilter field, help).
FILTER_OPTIONS = (
    ("--vendor", "vendor", "only this vendor's jobs"),
    ("--record-id", "record_id", "a record id, or a prefix ending in '*'"),
    ("--state", "state", f"one of {', '.join(STATES)}"),
    ("--type", "type", f"one of {', '.join(JOB_TYPES)}"),
    ("--batch", "batch_id", "the jobs of one bulk request"),
    ("--after", "created_after", "enqueued at or after this ISO 8601 time"),
    ("--before", "created_before", "enqueued before this ISO 8601 time"),
)


def add_parser(sub) -> None:
    """The ``jobs`` subcommand on the ``imgproc`` parser's subparsers."""
    jobs = sub.add_parser("jobs", help="list and retry failed jobs")
    jsub = jobs.add_subparsers(dest="action", required=True)
    failed = jsub.add_parser("failed", help="list failed jobs, newest first")
    retry = jsub.add_parser(
        "retry",
        help="requeue failed jobs",
        description="Requeue failed jobs: the error and any earlier output are cleared and the job gets a "
        "fresh set of attempts (its attempt count is kept); it waits at the end of its vendor's fair-share "
        "lane as a new job does. Give job ids, --all-failed (with --queue, --vendor), or a filter "
        "(--state, --record-id, ...; --dry-run counts the jobs it would take).",
    )
    retry.add_argument("ids", nargs="*", metavar="ID", help="job ids to requeue (or a filter, below)")
    retry.add_argument(
        "--all-failed", action="store_true", help="requeue every failed job (of --queue, --vendor)"
    )
    for parser_ in (failed, retry):
        parser_.add_argument("--queue", choices=QUEUES, help="only this queue")
        parser_.add_argument("--vendor", help="only this vendor's jobs")
    failed.add_argument("--limit", type=int, default=50, help="most jobs shown, 0 for all (default: 50)")
    find = jsub.add_parser("find", help="jobs by filter, newest first")
    find.add_argument("--limit", type=int, default=50, help="most jobs shown, 0 for all (default: 50)")
    find.add_argument("--json", action="store_true", help="the jobs as JSON")
    cancel = jsub.add_parser("cancel", help="cancel every waiting job a filter finds")
    for parser_ in (find, cancel, retry):
        for option, name, text in FILTER_OPTIONS:
            if option not in parser_._option_string_actions:  # retry's --vendor serves both
                parser_.add_argument(option, dest=name, help=text)
    for parser_ in (cancel, retry):
        parser_.add_argument("--dry-run", action="store_true", help="count the jobs it would take; take none")
    reindex = jsub.add_parser(
        "reindex",
        help="enter every job in the search index",
        description="Once after an upgrade from a version without the job index: jobs enqueued before "
        "it are found by a filter only once entered. Safe to run again (it also drops ids of jobs gone).",
    )
    reindex.add_argument("--vendor", help="only this vendor's jobs")
    jobs.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    from imgproc.queueing import JobQueue, redis_for
    from imgproc.queueing.retries import RetryRefused, failed_jobs, retry, retry_failed
    from imgproc.queueing.state import JobState

    jobs = JobQueue(redis_for(settings), settings)
    filtered = any(getattr(args, name, None) for _, name, _ in FILTER_OPTIONS[1:])
    if args.action in ("find", "cancel", "reindex") or (
        args.action == "retry" and not args.all_failed and not args.ids
    ):
        if args.action == "retry" and args.queue:
            print("error: --queue goes with --all-failed; a filter names a --type", file=sys.stderr)
            return 2
        return by_filter(args, settings, jobs)
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
    if (args.ids and (args.all_failed or args.queue or args.vendor)) or filtered or args.dry_run:
        print("error: give job ids, --all-failed (with --queue/--vendor), or a filter", file=sys.stderr)
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


def by_filter(args, settings: Settings, jobs) -> int:
    """``find``, ``cancel``, ``retry`` by filter and ``reindex``."""
    from imgproc.queueing import bulk, jobindex
    from imgproc.queueing.jobfilter import JobFilter
    from imgproc.queueing.search import Search
    from imgproc.queueing.state import JobState

    if args.action == "reindex":
        done = jobindex.reindex(jobs.conn, settings.failure_ttl, vendor=args.vendor)
        print(f"{done['jobs']} jobs indexed; {done['gone']} ids of jobs gone dropped")
        return 0
    try:
        flt = JobFilter.parse({name: getattr(args, name) for _, name, _ in FILTER_OPTIONS})
    except InvalidRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if args.action == "find":
        found = Search(jobs.conn, flt, settings.failure_ttl).page(limit=args.limit or 10**9, scan=10**12).jobs
        views = [{**jobs.job_view(job), "vendor": JobState.of(job).vendor} for job in found]
        if args.json:
            print(json.dumps({"jobs": views}, indent=2))
        elif views:
            print(table(FOUND_HEADERS, [found_row(view) for view in views]))
        else:
            print("no jobs found")
        return 0
    if flt == JobFilter():
        print("error: a bulk action needs a filter (--state, --vendor, ...)", file=sys.stderr)
        return 2
    if args.dry_run:
        outcome = bulk.plan(jobs, flt, args.action)
    else:
        outcome = bulk.act(jobs, flt, args.action, before=lambda o: audited(settings, o))
    for refusal in outcome.refused:
        print(f"refused {refusal['job_id']}: {refusal['reason']}", file=sys.stderr)
    if outcome.refused_count > len(outcome.refused):
        print(f"... and {outcome.refused_count - len(outcome.refused)} more refused", file=sys.stderr)
    done = {"cancel": "cancelled", "retry": "requeued"}[args.action]
    plural = "" if outcome.count == 1 else "s"
    verb = f"would be {done}" if args.dry_run else done
    print(f"{outcome.count} job{plural} {verb} of {outcome.matched} found")
    return 0


def audited(settings: Settings, outcome) -> None:
    """The bulk action into the audit log before it is taken."""
    from imgproc.adapters.audit import Actor, Audit
    from imgproc.adapters.db import make_engine

    details = {"filter": outcome.flt.given(), "count": outcome.count}
    Audit(make_engine(settings)).record(
        Actor.of_cli(), f"jobs.{outcome.action}", outcome.flt.target(), details
    )


def found_row(view: dict[str, Any]) -> tuple:
    """One row of ``imgproc jobs find``'s table, in ``FOUND_HEADERS`` order."""
    error = view["error"] or {}
    return (
        view["job_id"],
        view["vendor"],
        view["record_id"],
        view["type"],
        view["state"],
        view["created_at"],
        error.get("code"),
    )
