"""``imgproc webhooks failed | redeliver``: webhooks whose retries are spent, and sending them again."""

from __future__ import annotations

import sys

from imgproc.config import Settings

from .tables import table

HEADERS = ("webhook id", "vendor", "type", "job or batch", "attempts", "status", "error", "url")


def add_parser(sub) -> None:
    """The ``webhooks`` subcommand on the ``imgproc`` parser's subparsers."""
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
    hooks.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    from imgproc.adapters.db import make_engine
    from imgproc.adapters.webhooks import WebhookStore
    from imgproc.queueing import redis_for
    from imgproc.worker.webhooks import enqueue_delivery

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
        print(table(HEADERS, rows))
        return 0
    if bool(args.ids) == args.all_failed:
        print("error: give webhook ids, or --all-failed", file=sys.stderr)
        return 2
    ids = [m["id"] for m in store.failed(vendor=args.vendor)] if args.all_failed else args.ids
    conn = redis_for(settings)
    missing = 0
    from imgproc.adapters.audit import Actor, Audit

    audit, actor = Audit(make_engine(settings)), Actor.of_cli()
    for message_id in ids:
        audit.record(actor, "webhook.redeliver", f"webhook:{message_id}")
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
