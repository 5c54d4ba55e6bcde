"""``imgproc writeback check``: every vendor's own table that results are written into, reflected."""

from __future__ import annotations

from imgproc.config import Settings


def add_parser(sub) -> None:
    """The ``writeback`` subcommand on the ``imgproc`` parser's subparsers."""
    writeback = sub.add_parser("writeback", help="the vendors' own tables that results are written into")
    wsub = writeback.add_subparsers(dest="action", required=True)
    wsub.add_parser("check", help="reflect every target table; exit 1 on a missing column or a misfit value")
    writeback.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    from imgproc.adapters.writeback import Writeback

    writeback = Writeback.from_settings(settings)  # a mistake in the file: cli.main prints it, exit 1
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
