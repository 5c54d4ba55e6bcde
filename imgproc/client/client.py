"""``Client``: the imgproc API from Python, with retries and typed answers.

Retries follow openai-python's ``_base_client``: connection errors, 429 and
503 are retried with exponential backoff and jitter, honouring
``Retry-After``; a single enqueue carries one ``idempotency_key`` for the
whole logical call, so a retry after a lost answer returns the first job
instead of making a second. A bulk request has no idempotency key in the
API: it is retried only when nothing can have been enqueued (the connection
never opened, or a 429 / 503 answer).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from . import errors
from .cutouts import is_zip, unpack_zip
from .jobtypes import CROP_FACE, ENDPOINTS, PROCESS_IMAGE, REMOVE_BG
from .models import Batch, Job, Result

API = "/api/image-queue"


class Client:
    """``Client("https://imgproc.example.com", "ik_...")``: one vendor's view of the API."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ):
        self.max_retries = max_retries
        self.backoff = backoff
        #: What a relative result URL (``/media/...``, from an API without IMGPROC_PUBLIC_URL) is on.
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"X-API-Key": api_key},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- jobs ---------------------------------------------------------------

    def remove_background(self, image: str | Path | bytes, *, record_id: str, **kwargs: Any) -> Job:
        """One background removal of a photo URL, a file or its bytes; ``kwargs`` are options (API.md)."""
        return self.submit(REMOVE_BG, image, record_id=record_id, **kwargs)

    def crop_face(self, image: str | Path | bytes, *, record_id: str, **kwargs: Any) -> Job:
        return self.submit(CROP_FACE, image, record_id=record_id, **kwargs)

    def process_image(self, image: str | Path | bytes, *, record_id: str, **kwargs: Any) -> Job:
        return self.submit(PROCESS_IMAGE, image, record_id=record_id, **kwargs)

    def submit(
        self,
        job_type: str,
        image: str | Path | bytes,
        *,
        record_id: str,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """One job of ``job_type``; the same ``idempotency_key`` (made here unless given) on every retry."""
        single, _ = ENDPOINTS[job_type]
        fields: dict[str, Any] = {
            "record_id": record_id,
            "options": options,
            "idempotency_key": idempotency_key or "py-" + uuid.uuid4().hex,
        }
        if webhook_url:
            fields["webhook_url"] = webhook_url
        if isinstance(image, str) and image.startswith(("http://", "https://")):
            data = self._request(
                "POST", f"{API}/{single}", json={**fields, "image_url": image}, idempotent=True
            )
        else:
            content = image if isinstance(image, bytes) else Path(image).read_bytes()
            name = "photo" if isinstance(image, bytes) else Path(image).name
            form = {**fields, "options": json.dumps(options)}
            data = self._request(
                "POST", f"{API}/{single}", data=form, files={"image": (name, content)}, idempotent=True
            )
        try:
            return self.job(data["job_id"])
        except errors.ApiError:  # enqueued all the same (a 429 or 503 on the status): the job as accepted
            return Job.of({**data, "type": job_type, "record_id": record_id}, self)

    def bulk(
        self,
        job_type: str,
        items: list[str | dict[str, Any]],
        *,
        webhook_url: str | None = None,
        **options: Any,
    ) -> Batch:
        """Many jobs of ``job_type``: URLs (named by ``record_ids``) or ``{"record_id", "image_url"}``."""
        _, bulk = ENDPOINTS[job_type]
        names = record_ids([item for item in items if isinstance(item, str)])
        body: dict[str, Any] = {
            "items": [
                {"record_id": next(names), "image_url": item} if isinstance(item, str) else item
                for item in items
            ],
            "options": options,
        }
        if webhook_url:
            body["webhook_url"] = webhook_url
        data = self._request("POST", f"{API}/{bulk}", json=body, idempotent=False)
        try:
            return self.batch(data["batch_id"])
        except errors.ApiError:  # enqueued all the same: raising would invite a second bulk
            queued = [
                {"job_id": job_id, "record_id": item["record_id"], "state": "queued", "progress": 0}
                for job_id, item in zip(data["job_ids"], body["items"], strict=True)
            ]
            return Batch.of(
                {**data, "total": len(queued), "counts": {"queued": len(queued)}, "jobs": queued}, self
            )

    def download(self, result: Result | str, *, unpack: bool = False) -> bytes:
        """A result's bytes (a ``Result`` or its URL); ``unpack``: a zip result made one RGBA PNG.

        Sent without the API key: a result may be on another host (a CDN).
        """
        request = self._http.build_request("GET", result.url if isinstance(result, Result) else result)
        del request.headers["X-API-Key"]
        try:
            response = self._http.send(request, follow_redirects=True)
        except httpx.TransportError as exc:
            raise errors.ConnectionFailed("connection_failed", str(exc), 0) from exc
        if response.is_error:
            raise _error(response)
        return unpack_zip(response.content) if unpack and is_zip(response.content) else response.content

    def job(self, job_id: str) -> Job:
        return Job.of(self._request("GET", f"{API}/job/{job_id}"), self)

    def batch(self, batch_id: str) -> Batch:
        return Batch.of(self._request("GET", f"{API}/batch/{batch_id}"), self)

    def cancel(self, job_id: str) -> Job:
        return Job.of(self._request("DELETE", f"{API}/job/{job_id}"), self)

    def stats(self) -> dict[str, Any]:
        return self._request("GET", f"{API}/queue-stats")

    def limits(self) -> dict[str, dict[str, Any]]:
        """The vendor's request limits by scope (``global``, ``image``, ``bulk``, ``bg-removal``,
        ``session-reads``): each one's ``limit``, ``amount``, ``remaining`` and ``reset_in`` seconds."""
        return self._request("GET", f"{API}/limits")["limits"]

    # --- transport ------------------------------------------------------------

    def stream(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event, data)`` of an event stream, reconnecting after the last id seen, until it ends."""
        last_id = None
        for attempt in range(self.max_retries + 1):
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self._http.stream(
                    "GET",
                    API + path,
                    headers=headers,
                    timeout=httpx.Timeout(self._http.timeout.connect, read=60),
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        raise _error(response)
                    event: dict[str, str] = {}
                    for line in response.iter_lines():
                        if not line:  # the end of one event
                            if "data" in event:
                                last_id = event.get("id", last_id)
                                yield event.get("event", "message"), json.loads(event["data"])
                            event = {}
                        elif not line.startswith(":"):
                            name, _, value = line.partition(":")
                            event[name] = value.removeprefix(" ")
                return  # the server ended the stream: the job has ended
            except httpx.TransportError:
                if attempt == self.max_retries:
                    raise
                time.sleep(self._delay(attempt, None))

    def _request(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.ConnectError as exc:  # nothing was sent: always safe to retry
                if last:
                    raise errors.ConnectionFailed("connection_failed", str(exc), 0) from exc
                time.sleep(self._delay(attempt, None))
                continue
            except httpx.TransportError as exc:  # sent, answer lost: retry only what is idempotent
                if last or not idempotent:
                    raise errors.ConnectionFailed("connection_failed", str(exc), 0) from exc
                time.sleep(self._delay(attempt, None))
                continue
            if response.status_code in (429, 503) and not last:
                time.sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            if response.is_error:
                raise _error(response)
            return response.json()
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before the next attempt: the server's ``Retry-After`` if given (at most a minute)."""
        if retry_after:
            try:
                return min(60.0, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return self.backoff * 2**attempt * (0.5 + random.random())  # jitter: clients do not retry in step


def record_ids(urls: list[str]) -> Iterator[str]:
    """A record id for each URL of a bulk: its file name without the extension, as ``imgproc submit``
    names URLs (``https://cdn.example.com/photos/0042.jpg``: ``0042``, none: ``photo``); a name taken by
    an earlier URL of the list gets the URL's position too (``0042-3``).
    """
    taken: set[str] = set()
    for position, url in enumerate(urls):
        name = PurePosixPath(unquote(urlsplit(url).path)).stem[:160] or "photo"  # the API takes 191
        while name in taken:
            name = f"{name}-{position}"
        taken.add(name)
        yield name


def _error(response: httpx.Response) -> errors.ApiError:
    try:
        body = response.json()["error"]
        code, message, details = body["code"], body.get("message", ""), body.get("details", {})
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.text[:200], {}
    kind = errors.BY_STATUS.get(response.status_code, errors.ApiError)
    error = kind(code, message, response.status_code, details)
    if isinstance(error, errors.RateLimited) and response.headers.get("Retry-After"):
        error.retry_after = float(response.headers["Retry-After"])
    return error
