"""The ``imgproc`` command: operators' vendors, models, workers, jobs, queues; the demo; ``submit``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import redis

from imgproc import identifiers
from imgproc.config import Settings
from imgproc.errors import ImgprocError
from imgproc.jobtypes import QUEUES

from .submit import add_parser as add_submit_parser
from .vendor_admin import add_parser as add_vendors_parser


def cmd_models(args, settings: Settings) -> int:
    from imgproc.modelfiles import derive, provision, variants

    if args.action == "fetch":
        try:
            if args.model:
                for name in args.model:
                    provision.fetch_rembg_model(name, settings.models_dir)
            else:
                provision.fetch_models(settings.models_dir, settings.cache_dir)
                derive.derive_models(settings.models_dir)  # ISNet batched, fp16 and fp32 (issue 13)
                variants.derive_variants(settings.models_dir)  # ISNet lean and int8 for CPU (issue 14)
                _warm_matting(settings)
        except Exception as exc:  # every provisioning failure ends here with its explanation
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    problems = provision.check_models(settings.models_dir)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"models in {settings.models_dir} are complete and verified")
    return 1 if problems else 0


def _warm_matting(settings: Settings) -> None:
    """Compile pymatting's kernels now, so that no worker's first ``alpha_matting`` job waits a minute."""
    from imgproc.processing import matting

    cache = settings.matting_cache_dir
    fresh = not any(cache.glob("*/*.nbi"))
    if fresh:
        print(f"alpha matting: compiling pymatting's kernels into {cache} (about a minute, once)", flush=True)
    seconds = matting.warm(cache)
    print(f"alpha matting: kernels {'compiled' if fresh else 'loaded'} in {seconds:.1f} s ({cache})")


def cmd_workers(args, settings: Settings) -> int:
    from imgproc.worker.pool import run_pool

    if args.status:
        from .workerstatus import show

        return show(settings)

    return run_pool(args.n, args.queues, args.webhook_workers)


def _jobs(settings: Settings):
    from imgproc.queueing import JobQueue, redis_for

    return JobQueue(redis_for(settings), settings)


def cmd_jobs(args, settings: Settings) -> int:
    from . import admin

    jobs = _jobs(settings)
    if args.action == "failed":
        views = admin.failed_jobs(jobs, queue=args.queue, vendor=args.vendor)
        if not views:
            print("no failed jobs")
            return 0
        shown = views[: args.limit] if args.limit > 0 else views
        print(admin.table(admin.FAILED_HEADERS, admin.failed_rows(shown)))
        if len(shown) < len(views):
            print(f"({len(shown)} of {len(views)} failed jobs shown; --limit 0 shows all)")
        return 0
    if bool(args.ids) == args.all_failed or (args.ids and (args.queue or args.vendor)):
        print("error: give job ids, or --all-failed (optionally with --queue/--vendor)", file=sys.stderr)
        return 2
    if args.all_failed:
        requeued, refused = admin.retry_failed(jobs, queue=args.queue, vendor=args.vendor)
    else:
        requeued, refused = [], []
        for job_id in args.ids:
            try:
                requeued.append(admin.retry(jobs, job_id))
            except admin.RetryRefused as exc:
                refused.append(str(exc))
    for job in requeued:
        record = identifiers.shown(f"{job.meta.get('vendor')}/{job.meta.get('record_id')}")
        print(f"requeued {job.id}  {job.origin}  {record}")
    for message in refused:
        print(f"error: {message}", file=sys.stderr)
    if args.all_failed and not requeued and not refused:
        print("no failed jobs")
    elif requeued:
        print(f"{len(requeued)} job{'s' if len(requeued) != 1 else ''} requeued")
    return 1 if refused else 0


def cmd_queues(args, settings: Settings) -> int:
    from . import admin

    stats = _jobs(settings).stats("", operator=True)
    print(admin.table(*admin.queue_rows(stats)))
    print()
    if stats["vendors"]:
        print(admin.table(*admin.vendor_rows(stats)))
    else:
        print("no vendor has jobs")
    return 0


def cmd_webhooks(args, settings: Settings) -> int:
    from imgproc.adapters.db import make_engine
    from imgproc.adapters.webhooks import WebhookStore
    from imgproc.queueing import redis_for
    from imgproc.worker.webhooks import enqueue_delivery

    from . import admin

    store = WebhookStore(make_engine(settings), grace=settings.webhook_secret_grace)
    if args.action == "failed":
        failed = store.failed(vendor=args.vendor)
        if not failed:
            print("no undelivered webhooks")
            return 0
        rows = [
            (
                m["id"],
                m["vendor"],
                m["type"],
                m["job_id"] or m["batch_id"],
                m["attempts"],
                m["last_status"],
                (m["last_error"] or "")[:60],
                m["url"][:60],
            )
            for m in failed
        ]
        print(
            admin.table(
                ("webhook id", "vendor", "type", "job or batch", "attempts", "status", "error", "url"), rows
            )
        )
        return 0
    if bool(args.ids) == args.all_failed:
        print("error: give webhook ids, or --all-failed", file=sys.stderr)
        return 2
    ids = [m["id"] for m in store.failed(vendor=args.vendor)] if args.all_failed else args.ids
    conn = redis_for(settings)
    missing = 0
    for message_id in ids:
        message, refused = store.redeliver(message_id)
        if refused:
            print(f"error: {refused}", file=sys.stderr)
            missing += 1
            continue
        enqueue_delivery(conn, settings, message_id, message["vendor"])
        print(f"redelivering {message_id} to {message['url']} (same webhook-id)")
    if args.all_failed and not ids:
        print("no undelivered webhooks")
    return 1 if missing else 0


def cmd_db(args, settings: Settings) -> int:
    from .migrate import run_db

    return run_db(args.action, settings)


def cmd_writeback(args, settings: Settings) -> int:
    from imgproc.adapters.writeback import Writeback

    writeback = Writeback.from_settings(settings)  # a mistake in the file: main prints it, exit 1
    if writeback is None:
        print("IMGPROC_WRITEBACK_FILE is not set: results are written to imgproc's records only")
        return 0
    try:
        reports = writeback.check()
    finally:
        writeback.close()
    for report in reports:
        print("\n".join(report.lines()))
    return 1 if any(report.problems for report in reports) else 0


def _demo_operations(text: str) -> str:
    from .demo import BULKS

    if not text or set(text.split(",")) - set(BULKS):
        raise argparse.ArgumentTypeError(f"a comma-separated choice of {', '.join(BULKS)}")
    return text


def cmd_demo(args, settings: Settings) -> int:
    from .demo import run_demo

    return run_demo(
        out_dir=Path(args.out),
        serve=args.serve,
        var=Path(args.var) if args.var else None,
        workers=args.workers,
        operations=tuple(args.operations.split(",")),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgproc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    add_vendors_parser(sub)

    models = sub.add_parser("models", help="provision and check model weights")
    msub = models.add_subparsers(dest="action", required=True)
    fetch = msub.add_parser("fetch", help="provision ISNet and BlazeFace (or --model NAME through rembg)")
    fetch.add_argument("--model", action="append", help="another rembg model, e.g. u2net (needs network)")
    msub.add_parser("check", help="verify the model files against models/manifest.json")
    models.set_defaults(func=cmd_models)

    workers = sub.add_parser("workers", help="run N worker processes in the foreground")
    workers.add_argument("n", type=int, nargs="?", default=1)
    workers.add_argument("--queues", default=",".join(QUEUES))
    workers.add_argument(
        "--webhook-workers",
        type=int,
        default=1,
        help="workers of the webhooks queue besides the N image workers (default: 1)",
    )
    workers.add_argument(
        "--status", action="store_true", help="list the registered workers and the provider each runs on"
    )
    workers.set_defaults(func=cmd_workers)

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
    jobs.set_defaults(func=cmd_jobs)

    hooks = sub.add_parser("webhooks", help="list and redeliver undelivered webhooks")
    hsub = hooks.add_subparsers(dest="action", required=True)
    hfailed = hsub.add_parser("failed", help="webhooks not delivered, their retries spent (newest first)")
    redeliver = hsub.add_parser("redeliver", help="send webhooks again, with the same webhook-id")
    redeliver.add_argument("ids", nargs="*", metavar="ID", help="webhook ids (msg_...)")
    redeliver.add_argument(
        "--all-failed", action="store_true", help="every undelivered webhook (of --vendor)"
    )
    for parser_ in (hfailed, redeliver):
        parser_.add_argument("--vendor", help="only this vendor's webhooks")
    hooks.set_defaults(func=cmd_webhooks)

    queues = sub.add_parser("queues", help="counts per queue and per vendor, and workers")
    queues.set_defaults(func=cmd_queues)

    db = sub.add_parser("db", help="the database's schema: upgrade it, show or check its revision")
    dsub = db.add_subparsers(dest="action", required=True)
    dsub.add_parser("upgrade", help="upgrade the schema to this imgproc's (safe from many hosts at once)")
    dsub.add_parser("current", help="print the database's schema revision and the one this imgproc needs")
    dsub.add_parser("check", help="exit 1 unless the schema is this imgproc's and matches its tables")
    db.set_defaults(func=cmd_db)

    writeback = sub.add_parser("writeback", help="the vendors' own tables that results are written into")
    wsub = writeback.add_subparsers(dest="action", required=True)
    wsub.add_parser("check", help="reflect every target table; exit 1 on a missing column or a misfit value")
    writeback.set_defaults(func=cmd_writeback)

    demo = sub.add_parser("demo", help="run the end-to-end demo (what `make demo` does)")
    demo.add_argument("--out", default="out")
    demo.add_argument("--serve", action="store_true", help="keep the stack up afterwards, until Ctrl-C")
    demo.add_argument("--var", help="its database, media and logs (default: var/demo; emptied first)")
    demo.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    demo.add_argument(
        "--operations",
        default="remove-bg,crop-face",
        type=_demo_operations,
        help="the bulks sent, comma-separated (default: remove-bg,crop-face)",
    )
    demo.set_defaults(func=cmd_demo)

    add_submit_parser(sub)

    args = parser.parse_args(argv)
    try:
        code = args.func(args, Settings.from_env())
        sys.stdout.flush()  # here, where a closed pipe is caught, not in the interpreter's exit
        return code
    except redis.ConnectionError as exc:
        print(f"error: Redis is unreachable: {exc}", file=sys.stderr)
        return 1
    except ImgprocError as exc:  # e.g. the database's schema is behind: say so, no traceback
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `imgproc queues | head` closed the pipe: stop quietly, as cat and ls do. The Python docs'
        # recipe: point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command a pipe cut short


if __name__ == "__main__":
    sys.exit(main())
