"""Routes the web page needs beside API.md's, for any client: jobs found and acted on, retry, a zip, limits.

GET  /api/image-queue/jobs?page=1&per_page=20   the vendor's jobs, newest first
GET  /api/image-queue/jobs?state=failed&...     jobs by filter, newest first, paged by cursor
POST /api/image-queue/jobs/cancel               cancel every job a filter finds ("dry_run": true counts them)
POST /api/image-queue/jobs/retry                retry every failed job a filter finds (same)
POST /api/image-queue/job/<id>/retry            requeue a failed job (409 unless it failed)
GET  /api/image-queue/batch/<id>/results.zip    the finished results of a batch, streamed as a zip
GET  /api/image-queue/limits                    each rate limit: its value, requests left, reset time
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import urllib3
from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context
from rq.job import Job

from imgproc.adapters.storage import MEDIA
from imgproc.errors import Conflict, Forbidden, InvalidRequest, RateLimited
from imgproc.jobtypes import Payload
from imgproc.queueing import bulk, listing
from imgproc.queueing.jobfilter import JobFilter, decode_cursor
from imgproc.queueing.retries import RetryRefused, retry

from .operator import record
from .ratelimits import RequestLimits, Use
from .services import result_base, services

#: Where ``create_app`` keeps the app's ``RequestLimits``, which ``GET /limits`` reads.
LIMITS = "imgproc.limits"

bp = Blueprint("listings", __name__, url_prefix="/api/image-queue")

#: Largest page or per_page read: page=10**18 took Redis' range past its 64 bits (a 503 before).
MOST = 1_000_000
#: The query's and the body's filter fields (``JobFilter``).
FILTERS = ("vendor", "record_id", "state", "type", "batch_id", "created_after", "created_before")
#: Most jobs an operator's bulk action takes in one call (a vendor's: its plan's max_items); the
#: answer's ``remaining`` says how many are left, which the same call again takes next.
OPERATOR_MOST = 10_000


def _int_arg(name: str, default: int) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number", details={"field": name}) from None
    if value > MOST:
        raise InvalidRequest(f"{name} must be a whole number up to {MOST:,}", details={"field": name})
    return value


class _Sink:
    """A write-only file for ``zipfile``: what was written since the last ``take``."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data if isinstance(data, bytes) else bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        return data


#: Bytes of a result read and written into the zip at a time: about what one download holds in memory.
CHUNK = 256 * 1024


@contextmanager
def result_file(url: str) -> Iterator[tuple[BinaryIO, int | None]]:
    """A result open for reading, and its size where known: local storage's file, else its URL's answer."""
    svc = services()
    storage, public_url = svc.storage, svc.settings.public_url.rstrip("/")
    if public_url and url.startswith(public_url + MEDIA):  # stored absolute by an earlier version
        url = url[len(public_url) :]
    path = storage.local_path(url[len(MEDIA) :]) if url.startswith(MEDIA) else None
    if path is not None:
        with path.open("rb") as file:
            yield file, os.fstat(file.fileno()).st_size
        return
    response = urllib3.request("GET", url, timeout=30, retries=2, preload_content=False)
    try:
        if response.status != 200:
            raise OSError(f"{url} answered {response.status}")
        length = response.headers.get("Content-Length")
        yield response, int(length) if length and length.isdigit() else None
    except BaseException:
        response.close()  # left halfway (the download was abandoned): never back into the pool
        raise
    response.release_conn()


def zip_stream(results: list[dict[str, Any]]) -> Iterator[bytes]:
    """A zip of the results (stored, not compressed: photos are), written and sent a chunk at a time."""
    sink = _Sink()
    names: set[str] = set()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for result in results:
            name = result["url"].rsplit("/", 1)[-1].split("?")[0] or "result"
            stem, dot, ext = name.rpartition(".")
            n = 1
            while name in names:  # the same record id twice in one batch
                n += 1
                name = f"{stem}-{n}{dot}{ext}"
            names.add(name)
            info = zipfile.ZipInfo(name, time.gmtime()[:6])
            with result_file(result["url"]) as (source, size):
                # Zip64 fields where the size is unknown or near zip's 4 GiB: the entry is written first.
                with archive.open(info, "w", force_zip64=size is None or size > 2**31) as entry:
                    while chunk := source.read(CHUNK):
                        entry.write(chunk)
                        yield sink.take()
            yield sink.take()
    yield sink.take()


@bp.get("/jobs")
def jobs():
    args = request.args
    if "cursor" not in args and not any(args.get(name) for name in FILTERS):
        page, per_page = _int_arg("page", 1), _int_arg("per_page", 20)
        return jsonify(listing.vendor_jobs(services().jobs, g.vendor.name, page, per_page, result_base()))
    if "page" in args:
        raise InvalidRequest("a search is paged by cursor (next_cursor), not page", details={"field": "page"})
    flt, after = _search(args)
    per_page = _int_arg("per_page", 20)
    return jsonify(listing.search_jobs(services().jobs, flt, after, per_page, result_base()))


def _scoped(flt: JobFilter) -> JobFilter:
    """The caller's own jobs for a vendor (403 for another's ``vendor``); as asked for an operator."""
    if g.vendor.operator:
        return flt
    if flt.vendor not in (None, g.vendor.name):
        raise Forbidden("vendor is an operator's filter: a vendor finds only its own jobs")
    return dataclasses.replace(flt, vendor=g.vendor.name)


def _search(args) -> tuple[JobFilter, tuple[float, str] | None]:
    """The filter (the cursor's when one is given) and the place to go on from."""
    flt = _scoped(JobFilter.parse({name: args.get(name) for name in FILTERS}))
    cursor = args.get("cursor")
    if not cursor:
        return flt, None
    kept, after = decode_cursor(cursor)
    kept = _scoped(kept)
    if any(args.get(name) for name in FILTERS) and kept != flt:
        raise InvalidRequest(
            "cursor belongs to another filter: send it alone, or with the filter it came from",
            details={"field": "cursor"},
        )
    return kept, after


@bp.post("/jobs/<any(cancel, retry):action>")
def bulk_action(action: str):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object of filter fields", details={"field": "body"})
    body = dict(body)
    dry_run, most = body.pop("dry_run", False), body.pop("limit", None)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("dry_run must be true or false", details={"field": "dry_run"})
    cap = _bulk_cap()
    if most is not None and (isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= cap):
        raise InvalidRequest(f"limit must be a whole number from 1 to {cap:,}", details={"field": "limit"})
    flt = JobFilter.parse(body, strict=True)
    if flt == JobFilter():
        fields = ", ".join(FILTERS)
        raise InvalidRequest(f"a bulk action needs a filter: one of {fields}", details={"field": "filter"})
    flt = _scoped(flt)
    jobs = services().jobs
    if dry_run:
        return jsonify(bulk.plan(jobs, flt, action, most or cap).asdict())
    return jsonify(bulk.act(jobs, flt, action, most or cap, before=_before_bulk).asdict())


def _bulk_cap() -> int:
    if g.vendor.operator:
        return OPERATOR_MOST
    return g.plan.terms.max_items if "plan" in g else services().settings.max_bulk_items


def _before_bulk(outcome: bulk.Outcome) -> None:
    """An operator's bulk action goes to the audit log first; a vendor's retries use its limits."""
    if g.vendor.operator:
        record(
            f"jobs.{outcome.action}",
            outcome.flt.target(),
            {"filter": outcome.flt.given(), "count": outcome.count},
        )
    elif outcome.action == "retry" and outcome.count:
        _charge_retries(outcome.job_ids)


def _charge_retries(job_ids: list[str]) -> None:
    """A vendor's bulk retry costs what its retries one by one would: an image request each, a
    background removal each that runs the model; and one bulk operation. 429 past any of them."""
    limits: RequestLimits = current_app.extensions[LIMITS]
    items = limits.items_for(g.plan) if "plan" in g else limits.items
    matting = 0
    for job in Job.fetch_many(job_ids, connection=services().conn):
        payload = Payload.of(job) if job is not None else None
        try:
            matting += bool(payload and payload.job_type.runs_matting(payload.options or {}))
        except (KeyError, TypeError):  # options stored before the option existed: as ratelimits reads them
            pass
    uses = [Use("image", items["image"], len(job_ids)), Use("bulk", items["bulk"])]
    if matting:
        uses.append(Use("bg-removal", items["bg-removal"], matting))
    token = uuid.uuid4().hex
    verdict = limits.check(g.vendor.name, uses, token)
    g.limits = (verdict, uses, token)  # the answer's headers are this check's, given back on an error
    if verdict.refused is not None:
        raise RateLimited(f"{verdict.refused.scope} limit of {verdict.refused.item} reached")


@bp.post("/job/<job_id>/retry")
def retry_job(job_id: str):
    jobs = services().jobs
    job = jobs.job_for(g.vendor.name, job_id, operator=g.vendor.operator)
    try:
        job = retry(jobs, job)
    except RetryRefused as exc:
        raise Conflict(str(exc)) from None
    return jsonify(jobs.job_view(job))


@bp.get("/batch/<batch_id>/results.zip")
def batch_zip(batch_id: str):
    jobs = services().jobs
    view = jobs.batch_view(g.vendor.name, batch_id, operator=g.vendor.operator)
    results = []
    for item in view["jobs"]:
        if item["state"] == "finished":
            result = jobs.job_view(jobs.job_for(g.vendor.name, item["job_id"], operator=True))["result"]
            if result and result.get("url"):
                results.append(result)
    if not results:
        raise Conflict("no job of this batch has finished yet: nothing to download")
    return Response(
        stream_with_context(zip_stream(results)),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}.zip"'},
    )


@bp.get("/limits")
def limits():
    request_limits: RequestLimits = current_app.extensions[LIMITS]
    return jsonify({"limits": request_limits.stats(g.vendor.name)})
