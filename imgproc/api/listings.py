"""Routes the web page needs beside API.md's, for any client: the vendor's jobs, retry, a batch's zip, limits.

GET  /api/image-queue/jobs?page=1&per_page=20   the vendor's jobs, newest first
POST /api/image-queue/job/<id>/retry            requeue a failed job (409 unless it failed)
GET  /api/image-queue/batch/<id>/results.zip    the finished results of a batch, streamed as a zip
GET  /api/image-queue/limits                    each rate limit: its value, requests left, reset time
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import urllib3
from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context

from imgproc.adapters.storage import MEDIA
from imgproc.errors import Conflict, InvalidRequest
from imgproc.queueing import listing
from imgproc.queueing.retries import RetryRefused, retry

from .ratelimits import RequestLimits
from .services import result_base, services

#: Where ``create_app`` keeps the app's ``RequestLimits``, which ``GET /limits`` reads.
LIMITS = "imgproc.limits"

bp = Blueprint("listings", __name__, url_prefix="/api/image-queue")

#: Largest page or per_page read: page=10**18 took Redis' range past its 64 bits (a 503 before).
MOST = 1_000_000


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
    page, per_page = _int_arg("page", 1), _int_arg("per_page", 20)
    return jsonify(listing.vendor_jobs(services().jobs, g.vendor.name, page, per_page, result_base()))


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
