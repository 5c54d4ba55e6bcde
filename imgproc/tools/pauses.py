"""``imgproc pause`` / ``resume`` / ``pauses``: hold a queue's or a vendor's jobs in their lanes, let them go.

Other vendors' jobs keep running meanwhile (rq's own ``rq suspend`` stops every
worker). Each pause and resume is written to the audit log before it is taken.
"""

from __future__ import annotations

import sys

from imgproc.config import Settings
from imgproc.jobtypes import QUEUES

from .tables import table


def add_parser(sub) -> None:
    """The ``pause``, ``resume`` and ``pauses`` subcommands on the ``imgproc`` parser's subparsers."""
    for action, text in (
        ("pause", "hold a queue's or a vendor's jobs in their lanes (enqueues go on)"),
        ("resume", "let a paused queue's or vendor's jobs go to the workers again, in their order"),
    ):
        command = sub.add_parser(action, help=text)
        target = command.add_mutually_exclusive_group(required=True)
        target.add_argument("--queue", choices=QUEUES, help="an image queue")
        target.add_argument("--vendor", help="a vendor's name")
        command.set_defaults(func=run, action=action)
    sub.add_parser("pauses", help="the paused queues and vendors").set_defaults(func=listing)


def run(args, settings: Settings) -> int:
    from imgproc.adapters.audit import Actor, Audit
    from imgproc.adapters.db import make_engine
    from imgproc.adapters.vendors import Vendors
    from imgproc.queueing import redis_for
    from imgproc.queueing.pauses import Pauses

    kind, name = ("queue", args.queue) if args.queue else ("vendor", args.vendor)
    engine = make_engine(settings)
    if kind == "vendor" and name not in {v.name for v in Vendors(engine).list()}:
        print(f"error: no vendor {name!r}", file=sys.stderr)
        return 1
    # Written before the action: an action the audit log cannot record is not taken.
    Audit(engine).record(Actor.of_cli(), f"{kind}.{args.action}", f"{kind}:{name}")
    pauses = Pauses.of(redis_for(settings), settings)
    if args.action == "pause":
        held = pauses.pause(kind, name)
        print(f"{kind} {name} paused: its jobs wait in their lanes ({held} taken back from the queue)")
    elif pauses.resume(kind, name):
        print(f"{kind} {name} resumed")
    else:
        print(f"{kind} {name} was not paused")
    return 0


def listing(args, settings: Settings) -> int:
    from imgproc.queueing import redis_for
    from imgproc.queueing.pauses import Pauses

    paused = Pauses.of(redis_for(settings), settings).listing()
    rows = [("queue", p["queue"], p["since"]) for p in paused["queues"]]
    rows += [("vendor", p["vendor"], p["since"]) for p in paused["vendors"]]
    print(table(("kind", "name", "since"), rows) if rows else "nothing is paused")
    return 0
