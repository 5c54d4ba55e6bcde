"""``imgproc workers [N]``: N worker processes in the foreground (a pool); ``--status`` lists them."""

from __future__ import annotations

from imgproc.config import Settings
from imgproc.jobtypes import QUEUES


def add_parser(sub) -> None:
    """The ``workers`` subcommand on the ``imgproc`` parser's subparsers."""
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
    workers.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    if args.status:
        from .workerstatus import show

        return show(settings)
    from imgproc.worker.pool import run_pool

    return run_pool(args.n, args.queues, args.webhook_workers)
