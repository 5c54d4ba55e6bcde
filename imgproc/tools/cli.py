"""The ``imgproc`` command: operators' vendors, models, workers, jobs, queues; the demo; ``submit``."""

from __future__ import annotations

import argparse
import os
import sys

import redis

from imgproc.config import Settings
from imgproc.errors import ImgprocError

from . import (
    audit,
    db,
    demo,
    jobs,
    models,
    pauses,
    plans,
    queues,
    submit,
    vendors,
    webhooks,
    workers,
    writeback,
)

#: Each command's module: its ``add_parser(sub)`` declares it beside the handler it sets (``func``).
COMMANDS = (
    vendors,
    plans,
    models,
    workers,
    jobs,
    webhooks,
    queues,
    pauses,
    db,
    writeback,
    audit,
    demo,
    submit,
)


def parser() -> argparse.ArgumentParser:
    """The ``imgproc`` parser, every command's subparser added by the command's own module."""
    top = argparse.ArgumentParser(prog="imgproc", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
