"""``imgproc db upgrade | current | check``: the database's schema as an operator handles it."""

from __future__ import annotations

import sys

from imgproc.config import Settings


def add_parser(sub) -> None:
    """The ``db`` subcommand on the ``imgproc`` parser's subparsers."""
    db = sub.add_parser("db", help="the database's schema: upgrade it, show or check its revision")
    dsub = db.add_subparsers(dest="action", required=True)
    dsub.add_parser("upgrade", help="upgrade the schema to this imgproc's (safe from many hosts at once)")
    dsub.add_parser("current", help="print the database's schema revision and the one this imgproc needs")
    dsub.add_parser("check", help="exit 1 unless the schema is this imgproc's and matches its tables")
    db.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    """Run one ``imgproc db`` action; 0 when the schema is (now) this imgproc's (errors: ``cli.main``)."""
    from imgproc.adapters import schema
    from imgproc.adapters.db import database_errors, make_engine

    action = args.action
    engine = make_engine(settings, check_schema=False)
    where = engine.url.render_as_string(hide_password=True)
    try:
        with database_errors(engine, action):
            if action == "upgrade":
                before, after = schema.upgrade(engine)
                if before == after:
                    print(f"{where}: database schema is at {after} already, as this imgproc needs")
                else:
                    print(f"{where}: database schema upgraded from {before or 'none'} to {after}")
                return 0
            found = schema.state(engine)
            print(f"{where}: {found.describe()}")
            if action == "current":
                return 0
            if not found.at_head:
                return 1
            differences = schema.drift(engine)
            if differences:
                print(f"but its tables differ from this imgproc's: {differences}", file=sys.stderr)
                return 1
            return 0
    finally:
        engine.dispose()
