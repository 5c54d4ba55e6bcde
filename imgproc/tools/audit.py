"""``imgproc audit``: the audit log, newest first (operator actions from the CLI, the API and the page)."""

from __future__ import annotations

import json

from imgproc.config import Settings

from .tables import table

HEADERS = ("at", "who", "action", "target", "details", "from")


def add_parser(sub) -> None:
    """The ``audit`` subcommand on the ``imgproc`` parser's subparsers."""
    audit = sub.add_parser("audit", help="the audit log of operator actions, newest first")
    audit.add_argument("--limit", type=int, default=50, help="entries shown (default 50, at most 500)")
    audit.add_argument("--action", help="only this action (plan.update) or kind of action (plan)")
    audit.add_argument("--target", help="only actions on this target (vendor:acme, queue:bg-removal)")
    audit.add_argument("--json", action="store_true", help="the entries as JSON, one object per line")
    audit.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    from imgproc.adapters.audit import Audit
    from imgproc.adapters.db import make_engine

    entries = Audit(make_engine(settings)).entries(args.limit, action=args.action, target=args.target)
    if args.json:
        for entry in entries:
            print(json.dumps(entry, sort_keys=True))
        return 0
    if not entries:
        print("the audit log is empty")
        return 0
    rows = [
        (e["at"][:19], e["who"], e["action"], e["target"], json.dumps(e["details"])[:60], e["source"])
        for e in entries
    ]
    print(table(HEADERS, rows))
    return 0
