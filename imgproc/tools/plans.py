"""``imgproc plans``: list, add, set and remove plans; ``imgproc vendors set``'s plan, flag and overrides.

    imgproc plans add premium --all "1000 per 15 minutes" --weight 2 --max-running 8 --max-items 500
    imgproc plans set premium --weight 3 --bulk default     # "default": the environment's value again
    imgproc vendors set acme --plan premium --override max_items=800
    imgproc vendors set acme --disable

Each change is written to the audit log first, then to the database, then published to Redis
(``imgproc.queueing.planfeed``), where every API process and worker reads it within 5 s.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from imgproc.config import Settings

from .tables import table

HEADERS = ("plan", "all", "image", "bg_removal", "bulk", "weight", "max_running", "max_items", "vendors")
#: A value that clears a plan's field (or an override): the one below it shows through.
DEFAULT = "default"
#: The CLI's options of a plan's fields, and each field's name in the API's body.
FIELDS = {
    "all": "limits.all",
    "image": "limits.image",
    "bg_removal": "limits.bg_removal",
    "bulk": "limits.bulk",
    "weight": "weight",
    "max_running": "max_running",
    "max_items": "max_items",
}


def add_parser(sub) -> None:
    """The ``plans`` subcommand on the ``imgproc`` parser's subparsers."""
    plans = sub.add_parser("plans", help="vendor plans: request limits, fair-share weight, caps")
    psub = plans.add_subparsers(dest="action", required=True)
    psub.add_parser("list", help="every plan, and the default plan (the environment's)").add_argument(
        "--json", action="store_true", help="as JSON"
    )
    for action, text in (("add", "create a plan"), ("set", f"change a plan ('{DEFAULT}' clears a value)")):
        parser = psub.add_parser(action, help=text)
        parser.add_argument("name")
        _field_options(parser)
    psub.add_parser("remove", help="delete a plan no vendor is on").add_argument("name")
    psub.add_parser("publish", help="write every vendor's plan values to Redis again (after a restore)")
    plans.set_defaults(func=run)


def _field_options(parser) -> None:
    for name in FIELDS:
        what = "a whole number" if name in ("weight", "max_running", "max_items") else '"N per period"'
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="VALUE", help=what)


def add_vendor_options(parser) -> None:
    """``imgproc vendors set NAME``'s options (``imgproc.tools.vendors``)."""
    plan = parser.add_mutually_exclusive_group()
    plan.add_argument("--plan", help="the vendor's plan")
    plan.add_argument("--no-plan", action="store_true", help="back to the default plan")
    flag = parser.add_mutually_exclusive_group()
    flag.add_argument("--disable", action="store_true", help="refuse its keys (403 vendor_disabled)")
    flag.add_argument("--enable", action="store_true", help="accept its keys again")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"its own value over its plan's ({', '.join(FIELDS)}); VALUE '{DEFAULT}' removes it",
    )
    parser.add_argument("--no-overrides", action="store_true", help="remove all of its own values")


def _value(field: str, text: str) -> Any:
    if text == DEFAULT:
        return None
    return int(text) if not field.startswith("limits.") and text.lstrip("-").isdigit() else text


def _body(pairs: dict[str, str]) -> dict[str, Any]:
    """The API's body of the fields given on the command line (``limits`` nested)."""
    body: dict[str, Any] = {}
    for name, text in pairs.items():
        field = FIELDS[name]
        if field.startswith("limits."):
            body.setdefault("limits", {})[field.removeprefix("limits.")] = _value(field, text)
        else:
            body[field] = _value(field, text)
    return body


class _Store:
    """The plans in the database, the audit log beside them, and Redis where they are published."""

    def __init__(self, settings: Settings):
        from imgproc.adapters.audit import Audit
        from imgproc.adapters.db import make_engine
        from imgproc.adapters.plans import Plans
        from imgproc.queueing import redis_for

        self.conn = redis_for(settings)
        self.conn.ping()  # Redis unreachable: nothing is changed that could not be published
        engine = make_engine(settings)
        self.plans, self._audit = Plans(engine), Audit(engine)

    def record(self, action: str, target: str, details: dict | None = None) -> None:
        """Written before the action: an action the audit log cannot record is not taken."""
        from imgproc.adapters.audit import Actor

        self._audit.record(Actor.of_cli(), action, target, details)

    def publish(self) -> int:
        from imgproc.queueing import planfeed

        return planfeed.publish(self.conn, self.plans.published())


def run(args, settings: Settings) -> int:
    from imgproc.adapters.plans import read_changes

    store = _Store(settings)
    plans = store.plans
    if args.action == "list":
        return _list(plans, settings, args.json)
    if args.action in ("add", "set"):
        body = _body({name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None})
        changes = read_changes(body)
        if args.action == "set":
            plans.get(args.name)  # what the change would refuse is said before anything is recorded
        else:
            plans.require_new(args.name)
        store.record(f"plan.{'create' if args.action == 'add' else 'update'}", f"plan:{args.name}", body)
        plan = plans.create(args.name, changes) if args.action == "add" else plans.update(args.name, changes)
        done = "added" if args.action == "add" else "changed"
        print(f"plan {plan.name} {done}: {json.dumps(plan.terms.set_values())}")
    elif args.action == "remove":
        plans.require_unused(args.name)
        store.record("plan.delete", f"plan:{args.name}")
        plans.delete(args.name)
        print(f"plan {args.name} removed")
    published = store.publish()
    if args.action == "publish":
        print(f"plan values of every vendor published (version {published})")
    return 0


def _list(plans, settings: Settings, as_json: bool) -> int:
    from imgproc.adapters.plans import default_terms

    found, default = plans.list(), default_terms(settings)
    if as_json:
        print(
            json.dumps({"plans": [p.to_dict() for p in found], "default": default.to_dict()}, sort_keys=True)
        )
        return 0
    rows = [_row("(default)", default, None)] + [_row(p.name, p.terms, p.vendors) for p in found]
    print(table(HEADERS, rows))
    print("(a value not set, '-', is the default plan's, from the environment)", file=sys.stderr)
    return 0


def _row(name: str, terms, vendors: int | None) -> tuple:
    limits = [terms.limits.get(n) for n in ("all", "image", "bg_removal", "bulk")]
    return (name, *limits, terms.weight, terms.max_running, terms.max_items, vendors)


def set_vendor(args, settings: Settings) -> int:
    """``imgproc vendors set NAME``: its plan, disabled flag and overrides, audited, then published."""
    from imgproc.adapters.plans import CLEAR_ALL, read_changes

    pairs = {}
    for given in args.override:
        name, _, text = given.partition("=")
        name = name.strip().replace("-", "_")
        if name not in FIELDS or not text:
            print(f"error: --override takes FIELD=VALUE, FIELD one of {', '.join(FIELDS)}", file=sys.stderr)
            return 2
        pairs[name] = text.strip()
    changes = read_changes(_body(pairs), "overrides.") if pairs else None
    if args.no_overrides:
        changes = {**CLEAR_ALL, **(changes or {})}
    plan = None if args.no_plan else args.plan
    disabled = True if args.disable else False if args.enable else None
    if plan is None and not args.no_plan and disabled is None and changes is None:
        print("error: give --plan, --no-plan, --disable, --enable or --override", file=sys.stderr)
        return 2
    store = _Store(settings)
    plans = store.plans
    plans.vendor(args.name)  # NotFound: said before anything is recorded
    target = f"vendor:{args.name}"
    if plan is not None or args.no_plan:
        if plan is not None:
            plans.get(plan)
        store.record("vendor.set", target, {"plan": plan})
    if changes is not None:
        details = {"overrides": _body(pairs), **({"cleared": True} if args.no_overrides else {})}
        store.record("vendor.set", target, details)
    if disabled is not None:
        store.record("vendor.disable" if disabled else "vendor.enable", target)
    kwargs = {"plan": plan} if plan is not None or args.no_plan else {}
    now = plans.set_vendor(args.name, disabled=disabled, overrides=changes, **kwargs)
    store.publish()
    state = "disabled" if now.disabled else "enabled"
    own = json.dumps(now.overrides.set_values()) if now.overrides.set_values() else "none"
    print(f"vendor {now.name}: plan {now.plan or '(default)'}, {state}, overrides {own}")
    return 0
