"""The ``imgproc`` command for operators: vendors, models, worker pools and the demo."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from .config import QUEUES, ROOT, Settings


def _vendors(settings: Settings):
    from .db import make_engine
    from .vendors import Vendors

    return Vendors(make_engine(settings))


def cmd_vendors(args, settings: Settings) -> int:
    vendors = _vendors(settings)
    try:
        if args.action == "add":
            key = vendors.add(args.name, operator=args.operator)
            print(f"vendor {args.name} added{' (operator)' if args.operator else ''}. Its API key, shown only once:")
            print(key)
        elif args.action == "rotate":
            print(vendors.rotate(args.name))
        elif args.action == "remove":
            if not vendors.remove(args.name):
                print(f"no vendor {args.name}", file=sys.stderr)
                return 1
            print(f"vendor {args.name} removed")
        else:
            for vendor in vendors.list():
                print(f"{vendor.name}{'  (operator)' if vendor.operator else ''}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_models(args, settings: Settings) -> int:
    from . import provision

    if args.action == "fetch":
        try:
            if args.model:
                for name in args.model:
                    provision.fetch_rembg_model(name, settings.models_dir)
            else:
                provision.fetch_models(settings.models_dir, settings.cache_dir)
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


def cmd_workers(args, settings: Settings) -> int:
    """Run N worker processes in the foreground; SIGINT/SIGTERM stops them gracefully."""
    env = dict(os.environ, IMGPROC_WORKERS_PER_HOST=str(args.n))
    command = [sys.executable, str(ROOT / "worker.py"), "--queues", args.queues]
    procs = [subprocess.Popen(command, env=env) for _ in range(args.n)]

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [proc.wait() for proc in procs]
    return max(codes)


def cmd_demo(args, settings: Settings) -> int:
    from .demo import run_demo

    return run_demo(out_dir=Path(args.out), keep_running=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgproc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    vendors = sub.add_parser("vendors", help="manage vendors and their API keys")
    vsub = vendors.add_subparsers(dest="action", required=True)
    add = vsub.add_parser("add", help="create a vendor and print its API key once")
    add.add_argument("name")
    add.add_argument("--operator", action="store_true", help="may see every vendor's stats and jobs")
    vsub.add_parser("rotate", help="replace a vendor's key (the old one stops working)").add_argument("name")
    vsub.add_parser("remove", help="delete a vendor").add_argument("name")
    vsub.add_parser("list", help="list vendors")
    vendors.set_defaults(func=cmd_vendors)

    models = sub.add_parser("models", help="provision and check model weights")
    msub = models.add_subparsers(dest="action", required=True)
    fetch = msub.add_parser("fetch", help="provision ISNet and BlazeFace (or --model NAME through rembg)")
    fetch.add_argument("--model", action="append", help="another rembg model, e.g. u2net (needs network)")
    msub.add_parser("check", help="verify the model files against models/manifest.json")
    models.set_defaults(func=cmd_models)

    workers = sub.add_parser("workers", help="run N worker processes in the foreground")
    workers.add_argument("n", type=int, nargs="?", default=1)
    workers.add_argument("--queues", default=",".join(QUEUES))
    workers.set_defaults(func=cmd_workers)

    demo = sub.add_parser("demo", help="run the end-to-end demo (what `make demo` does)")
    demo.add_argument("--out", default="out")
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    return args.func(args, Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
