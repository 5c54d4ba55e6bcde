"""``imgproc submit``: photos through the API from the command line, results saved as they finish.

    imgproc submit remove-bg photos/*.jpg --out results/
    imgproc submit crop-face --csv photos.csv --preset icao-35x45 --out results/ --resume

Built on ``imgproc.client``. A file is uploaded in a request of its own (the
bulk endpoints take URLs only, API.md); URLs, given as arguments or as
``record_id,url`` rows of a CSV, go in bulks of ``--bulk-size``. Each upload
and each bulk is followed on its event stream, and a finished job's result is
downloaded at once into ``--out`` as ``<record id>.<format>``; a zip result
(remove-bg ``-o format=zip``: color.jpg + alpha.png) is unpacked there into
``<record id>.png``, the RGBA cut-out, unless ``--keep-zip`` keeps the zip.

Exit status: 0 when every job finished; 1 when any job failed or could not be
sent; 2 for a usage error (bad arguments, options the API refused, an API key
it does not know: nothing was enqueued); 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from rich.console import Console

from imgproc.client import ApiError, Client, ConnectionFailed, NotFound, RateLimited, Unauthorized
from imgproc.client.client import ENDPOINTS
from imgproc.client.errors import UnpackError
from imgproc.client.models import ENDED, Job
from imgproc.config import Settings
from imgproc.errors import InvalidOptions
from imgproc.jobtypes import JOB_TYPES, QUEUE_BG

from . import submit_records
from .submit_display import Display, print_summary
from .submit_records import UPLOADS, Record, UsageError, existing_result, load_records, parse_option

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Stopped(Exception):
    """Raised inside a sending thread once Ctrl-C (or a fatal answer) has stopped the run."""


def _seconds(job: Job) -> float | None:
    if not (job.started_at and job.ended_at):
        return None
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (job.started_at, job.ended_at))
    return (end - start).total_seconds()


class Submitter:
    """Sends the records of one run and follows them to their end, from a few threads."""

    def __init__(
        self,
        client: Client,
        args: argparse.Namespace,
        options: dict,
        display: Display,
        keep_zip: bool = False,
    ):
        self.client = client
        self.operation = args.operation
        self.options = options
        self.out: Path = args.out
        self.api_url = args.api_url
        self.timeout = args.timeout
        self.keep_zip = keep_zip
        self.display = display
        # Results are fetched without the API key: a result URL may be another host's (Cloudinary).
        self.downloads = httpx.Client(timeout=60, follow_redirects=True)
        self.stop = threading.Event()
        self.fatal: ApiError | None = None

    def _call(self, send: Callable[[], Any]) -> Any:
        """``send()``, again after each 429 once the client's own retries are spent, until stopped."""
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return send()
            except RateLimited as exc:
                wait = exc.retry_after or 10.0
                self.display.note(f"{exc.message}: waiting {wait:.0f} s (the API's Retry-After)")
                if self.stop.wait(wait):
                    raise _Stopped from None

    def upload(self, record: Record) -> None:
        job = self._call(
            lambda: self.client.submit(
                self.operation, record.source, record_id=record.record_id, **self.options
            )
        )
        record.job_id, record.state = job.id, job.state

        def moved(view: Job) -> None:
            self.display.moved(UPLOADS, record.record_id, view.progress)

        self.finish(record, self._call(lambda: job.wait(timeout=self.timeout, progress=moved)), UPLOADS)

    def bulk(self, name: str, records: list[Record]) -> None:
        items = [{"record_id": r.record_id, "image_url": r.source} for r in records]
        batch = self._call(lambda: self.client.bulk(self.operation, items, **self.options))
        by_job = dict(zip(batch.job_ids, records, strict=True))
        for job_id, record in by_job.items():
            record.job_id, record.state = job_id, "queued"

        def follow(view) -> None:
            for item in view.jobs:
                record = by_job.get(item["job_id"])
                if record is not None and not record.ended and item["state"] not in ENDED:
                    self.display.moved(name, record.record_id, item.get("progress", 0))
                elif record is not None and not record.ended:
                    try:
                        job = self._call(functools.partial(self.client.job, item["job_id"]))
                    except NotFound:  # expired before we looked
                        record.state, record.error, record.ended = "expired", "expired", True
                        self.display.ended(name, record)
                        continue
                    self.finish(record, job, name)

        # A 429 on the way (every GET counts against the vendor's limits): wait, then follow again;
        # the records that have ended are not looked at twice.
        self._call(lambda: batch.wait(timeout=self.timeout, progress=follow))

    def finish(self, record: Record, job: Job, group: str) -> None:
        if self.stop.is_set():
            raise _Stopped
        record.state, record.seconds = job.state, _seconds(job)
        if job.state == "finished" and job.result:
            url = urljoin(self.api_url + "/", job.result.url)
            try:
                record.saved = submit_records.save_result(
                    self.downloads, url, self.out / record.file_name, job.result.format, self.keep_zip
                )
            except (httpx.HTTPError, OSError) as exc:
                record.state, record.error = "failed", f"download_failed: {url}: {exc}{_hint(url)}"
            except UnpackError as exc:
                record.state, record.error = "failed", f"unpack_failed: {exc} (the zip is kept in {self.out})"
        elif job.error:
            record.error = f"{job.error.code}: {job.error.message}"
        else:
            record.error = job.state  # canceled, stopped: no error of its own
        record.ended = True
        self.display.ended(group, record)

    def run_unit(self, records: list[Record], send: Callable[[], None]) -> None:
        """``send()`` in a thread; whatever stops it is written on the records that had not ended."""
        try:
            send()
        except _Stopped:
            return
        except ApiError as exc:
            if exc.code == "invalid_options" or isinstance(exc, (Unauthorized, ConnectionFailed)):
                # Every request would fail the same way (the client has retried a lost connection).
                self.fatal = exc
                self.stop.set()
                return
            error = f"{exc.code}: {exc.message}"
        except Exception as exc:  # a bug or an unexpected answer: shown on the records, exit status 1
            error = f"client_error: {type(exc).__name__}: {exc}"
        for record in records:
            if not record.ended and not self.stop.is_set():
                record.state = "error" if record.job_id else "not sent"
                record.error, record.ended = error, True
                self.display.ended(record.group, record)

    def close(self) -> None:
        self.downloads.close()


def _hint(url: str) -> str:
    """What to check when a result on the API's own ``/media/`` cannot be downloaded."""
    if not urlsplit(url).path.startswith("/media/"):
        return ""  # Cloudinary or another CDN: its own error says enough
    return " (the API builds its results' URLs from its IMGPROC_PUBLIC_URL when set: check that setting)"


def _threads(submitter: Submitter, todo: list[Record], args, display: Display) -> list[threading.Thread]:
    """Threads for the run: ``--concurrency`` uploaders sharing the files, one per bulk of URLs."""
    threads = []
    files = [r for r in todo if not r.is_url]
    urls = [r for r in todo if r.is_url]
    if files:
        display.add(UPLOADS, len(files))
        pending: queue.SimpleQueue[Record] = queue.SimpleQueue()
        for record in files:
            pending.put(record)

        def uploader() -> None:
            while not submitter.stop.is_set():
                try:
                    record = pending.get_nowait()
                except queue.Empty:
                    return
                submitter.run_unit([record], functools.partial(submitter.upload, record))

        threads += [
            threading.Thread(target=uploader, daemon=True) for _ in range(min(args.concurrency, len(files)))
        ]
    chunks = [urls[i : i + args.bulk_size] for i in range(0, len(urls), args.bulk_size)]
    for n, chunk in enumerate(chunks, 1):
        name = f"bulk {n}/{len(chunks)}"
        display.add(name, len(chunk))
        for record in chunk:
            record.group = name
        threads.append(
            threading.Thread(
                target=submitter.run_unit,
                args=(chunk, lambda name=name, chunk=chunk: submitter.bulk(name, chunk)),
                daemon=True,
            )
        )
    return threads


def _runs_matting(operation: str, options: dict) -> bool:
    """Whether the jobs run the background-removal model, and so count against its limit item by item:
    every remove-bg, and a crop-face whose options (or preset) remove the background."""
    if JOB_TYPES[operation].queue == QUEUE_BG:  # a removal, whatever model it names (the server's list)
        return True
    from imgproc.api.options import validate  # here: the API's package costs 0.6 s to import

    try:
        return JOB_TYPES[operation].runs_matting(validate(operation, options, Settings()))
    except InvalidOptions:  # the API refuses them, and says why
        return False


def _fit_bulks_to_the_limit(args: argparse.Namespace) -> None:
    """A background-removal bulk costs one of its limit per item, and one over the whole limit is refused
    however long it waits (30 per hour by default against bulks of 500): bulks of the limit's amount."""
    with Client(args.api_url, args.api_key) as client:
        limit = client.limits().get("bg-removal", {})
    amount = limit.get("amount")
    if amount and args.bulk_size > amount:
        print(f"bulks of {amount} URLs: the vendor's background-removal limit is {limit.get('limit')}")
        args.bulk_size = amount


def run(args: argparse.Namespace) -> int:
    """``imgproc submit``: the exit status (module docstring)."""
    console = Console(highlight=False)
    try:
        options = dict(parse_option(text) for text in args.option)
        if args.preset:
            options["preset"] = args.preset
        if not args.api_key:
            raise UsageError("no API key: give --api-key or set IMGPROC_API_KEY")
        if args.bulk_size < 1 or args.concurrency < 1:
            raise UsageError("--bulk-size and --concurrency are at least 1")
        records = load_records(args.photos, args.csv)
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: {exc.strerror}") from None
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.resume:
        for record in records:
            record.saved = existing_result(args.out, record)
            if record.saved:
                record.state, record.ended = "skipped", True
    todo = [r for r in records if not r.ended]
    skipped = len(records) - len(todo)
    if _runs_matting(args.operation, options) and any(r.is_url for r in todo):
        try:
            _fit_bulks_to_the_limit(args)
        except ApiError as exc:
            if isinstance(exc, Unauthorized):
                print(f"error: the API refused the request: {exc.code}: {exc.message}", file=sys.stderr)
                return EXIT_USAGE
            # An API without /limits, or out of reach: the bulks go as asked, and meet what they meet.
    print(
        f"{args.operation}: {len(todo)} photo{'s' if len(todo) != 1 else ''} to {args.api_url}"
        + (f", {skipped} skipped (already in {args.out}/)" if skipped else "")
        + (f", options {json.dumps(options)}" if options else ""),
        flush=True,
    )
    started = time.monotonic()
    interrupted = False
    with Client(args.api_url, args.api_key) as client:
        display = Display(console)
        submitter = Submitter(client, args, options, display, args.keep_zip)
        try:
            threads = _threads(submitter, todo, args, display)
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(0.1)  # short joins: Ctrl-C reaches this thread at once
                display.tick()
        except KeyboardInterrupt:
            interrupted = True
            submitter.stop.set()
        finally:
            display.close()
        submitter.close()
    fatal = submitter.fatal
    if fatal is not None and not isinstance(fatal, ConnectionFailed):  # refused: nothing was enqueued
        print(f"error: the API refused the request: {fatal.code}: {fatal.message}", file=sys.stderr)
        return EXIT_USAGE
    for record in records:
        if not record.ended:
            record.state = "interrupted" if record.job_id else "not sent"
            record.error = f"job {record.job_id} goes on on the server" if record.job_id else ""
    print_summary(records, console, args.out, time.monotonic() - started)
    if fatal is not None:
        print(f"error: the API at {args.api_url} cannot be reached: {fatal.message}", file=sys.stderr)
    if interrupted:
        print("interrupted: --resume sends again only what has no result in --out", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(r.state not in ("finished", "skipped") for r in records) else EXIT_OK


def add_parser(sub) -> None:
    """The ``submit`` subcommand on the ``imgproc`` parser's subparsers."""
    parser = sub.add_parser(
        "submit",
        help="send photos (files, URLs or a CSV) to the API; results saved into --out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("operation", choices=sorted(ENDPOINTS), help="what is done to each photo")
    parser.add_argument(
        "photos", nargs="*", metavar="FILE_OR_URL", help="files are uploaded; URLs go in bulks"
    )
    parser.add_argument("--csv", metavar="FILE", help="rows of record_id,url (a header row may come first)")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder of the results, <record id>.<format>"
    )
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the operation (README, API.md); VALUE is JSON when it parses: size=[300,400]",
    )
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help="crop-face: an ID photo (icao-35x45); remove-bg: a marketplace (amazon-main)",
    )
    parser.add_argument("--resume", action="store_true", help="skip records whose result is already in --out")
    parser.add_argument(
        "--keep-zip",
        action="store_true",
        help="save a zip result (format=zip) as it comes, <record id>.zip, instead of unpacking it into "
        "<record id>.png (RGBA: alpha.png put in as color.jpg's alpha)",
    )
    # The client's two settings are read here, not in imgproc.config: Settings is the server's
    # configuration (Redis, database, models...), which a vendor's machine running this has none of.
    parser.add_argument(
        "--api-url",
        metavar="URL",
        default=os.environ.get("IMGPROC_API_URL", "http://127.0.0.1:8000"),
        help="the API's base URL (default: $IMGPROC_API_URL, else http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("IMGPROC_API_KEY"),
        help="default: $IMGPROC_API_KEY",
    )
    parser.add_argument(
        "--bulk-size",
        type=int,
        metavar="N",
        default=500,
        help="URLs per bulk request (the API's IMGPROC_MAX_BULK_ITEMS: 500)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="files uploaded and followed at once (4)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="seconds to wait for a job or a bulk to end (3600)",
    )
    parser.set_defaults(func=lambda args, settings: run(args))
