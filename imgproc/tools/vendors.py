"""``imgproc vendors``: add, list, rotate, retire and purge vendors; their webhook secrets; ``set``: plans."""

from __future__ import annotations

import sys

from imgproc.config import Settings

from . import plans


def add_parser(sub) -> None:
    """The ``vendors`` subcommand on the ``imgproc`` parser's subparsers."""
    vendors = sub.add_parser("vendors", help="manage vendors and their API keys")
    vsub = vendors.add_subparsers(dest="action", required=True)
    add = vsub.add_parser("add", help="create a vendor and print its API key once")
    add.add_argument("name")
    add.add_argument("--operator", action="store_true", help="may see every vendor's stats and jobs")
    vsub.add_parser("rotate", help="replace a vendor's key (the old one stops working)").add_argument("name")
    vsub.add_parser(
        "remove", help="retire a vendor: its key stops working, its name stays taken until purged"
    ).add_argument("name")
    vsub.add_parser(
        "purge", help="delete a removed vendor's jobs, results, records and webhooks; frees its name"
    ).add_argument("name")
    vsub.add_parser("list", help="list vendors")
    vset = vsub.add_parser("set", help="a vendor's plan, disabled flag and overrides (imgproc.tools.plans)")
    vset.add_argument("name")
    plans.add_vendor_options(vset)
    secret = vsub.add_parser(
        "webhook-secret", help="show the vendor's webhook signing secret (made on first use)"
    )
    secret.add_argument("name")
    secret.add_argument(
        "--rotate",
        action="store_true",
        help="a new secret; the previous one also signs for IMGPROC_WEBHOOK_SECRET_GRACE seconds",
    )
    vendors.set_defaults(func=run)


def _vendors(settings: Settings):
    from imgproc.adapters.db import make_engine
    from imgproc.adapters.vendors import Vendors

    return Vendors(make_engine(settings))


#: Actions on vendors that the audit log records, and their names there.
AUDITED = {
    "add": "vendor.add",
    "rotate": "key.rotate",
    "remove": "vendor.remove",
    "purge": "vendor.purge",
}


def run(args, settings: Settings) -> int:
    if args.action == "set":
        return plans.set_vendor(args, settings)
    vendors = _vendors(settings)
    if args.action in AUDITED:
        # Written before the action: an action the audit log cannot record is not taken.
        from imgproc.adapters.audit import Actor, Audit
        from imgproc.adapters.db import make_engine

        details = {"operator": True} if getattr(args, "operator", False) else None
        Audit(make_engine(settings)).record(
            Actor.of_cli(), AUDITED[args.action], f"vendor:{args.name}", details
        )
    try:
        if args.action == "add":
            key = vendors.add(args.name, operator=args.operator)
            print(
                f"vendor {args.name} added{' (operator)' if args.operator else ''}. "
                "Its API key, shown only once:"
            )
            print(key)
        elif args.action == "rotate":
            print(vendors.rotate(args.name))
        elif args.action == "webhook-secret":
            from imgproc.adapters.db import make_engine
            from imgproc.adapters.webhooks import WebhookStore

            if args.name not in {v.name for v in vendors.list()}:
                print(f"no vendor {args.name}", file=sys.stderr)
                return 1
            store = WebhookStore(make_engine(settings), grace=settings.webhook_secret_grace)
            print(store.secret(args.name, rotate=args.rotate))
            if args.rotate:
                hours = settings.webhook_secret_grace / 3600
                print(f"(the previous secret signs too for {hours:g} h, beside this one)", file=sys.stderr)
        elif args.action == "remove":
            if not vendors.remove(args.name):
                print(f"no vendor {args.name}", file=sys.stderr)
                return 1
            print(
                f"vendor {args.name} removed: its key no longer works, and its name stays taken while its "
                f"jobs, results and records are kept (`imgproc vendors purge {args.name}` deletes them)"
            )
        elif args.action == "purge":
            return _purge(args.name, vendors, settings)
        else:
            for vendor in vendors.list():
                marks = ["operator"] * vendor.operator + [f"plan {vendor.plan}"] * bool(vendor.plan)
                marks += ["disabled"] * vendor.disabled
                print(vendor.name + "".join(f"  ({mark})" for mark in marks))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _purge(name: str, vendors, settings: Settings) -> int:
    """A removed vendor's jobs, Redis keys, rows and result files deleted, and its name freed."""
    from imgproc.adapters.storage import make_storage
    from imgproc.queueing import purge, redis_for

    if name in {v.name for v in vendors.list()}:
        print(
            f"error: vendor {name} is active: remove it first (imgproc vendors remove {name})",
            file=sys.stderr,
        )
        return 1
    conn = redis_for(settings)
    busy = purge.running(conn, name)
    if busy:
        print(f"error: {len(busy)} job(s) of {name} are running; purge again when they end", file=sys.stderr)
        return 1
    counts = {"jobs": purge.purge(conn, name)}
    storage = make_storage(settings)
    deleted = storage.delete_folder(name)
    if deleted is not None:
        counts["result files"] = deleted
    else:  # results kept elsewhere (Cloudinary): only their addresses were ours, and they are gone
        print(f"its results in {storage!r} under {name}/ are not deleted: delete them there", file=sys.stderr)
    counts.update(vendors.purge(name))
    done = ", ".join(f"{n} {what}" for what, n in counts.items())
    print(f"vendor {name} purged ({done}); the name is free")
    return 0
