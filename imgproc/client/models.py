"""Typed answers of the API: a job, its result or error, a batch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ApiError, Timeout

#: The ``Client`` that made a Job or a Batch (not imported here: client.py imports this module).
Client = Any

#: States a job never leaves.
ENDED = frozenset({"finished", "failed", "canceled", "stopped", "expired"})


@dataclass(frozen=True)
class Result:
    """What a finished job made: its URL and size; ``extra`` holds the rest (faces, crop_box, model...)."""

    url: str
    width: int
    height: int
    #: ``png``, ``jpg``, ``webp`` or ``zip`` (color.jpg + alpha.png: ``Client.download(unpack=True)``).
    format: str
    bytes: int
    record_id: str | None = None
    duration_ms: int | None = None
    #: A background removal's: how sure the mask is (0-1), and whether it is under the API's threshold,
    #: for a person to look at.
    confidence: float | None = None
    review: bool | None = None
    #: ``[x, y, w, h]`` of the subject in the output's pixels (a removal with a layout).
    subject_box: list[int] | None = None
    #: ``"photo"`` where ``keep_alpha: auto`` kept the photo's own transparency.
    alpha_source: str | None = None
    #: A preset's report (an ID photo's or a marketplace's): ``preset``, ``compliant``, ``checks``,
    #: ``failed``.
    compliance: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any], base: str | None = None) -> Result:
        """The result in ``data``; a URL relative to the API (``/media/...``) made absolute on ``base``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: data.get(k) for k in known}
        url = values["url"]
        if base and isinstance(url, str) and url.startswith("/") and not url.startswith("//"):
            values["url"] = base.rstrip("/") + url
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


@dataclass(frozen=True)
class JobError:
    """Why a job failed (or waits for a retry): a stable ``code`` and a message for people."""

    code: str
    message: str
    retryable: bool = False


@dataclass
class Job:
    """A job's status as ``GET /job/<id>`` answers it; ``wait`` and ``events`` follow it live."""

    id: str
    state: str
    type: str | None = None
    record_id: str | None = None
    batch_id: str | None = None
    progress: int = 0
    stage: str = "queued"
    attempts: int = 0
    max_attempts: int | None = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    result: Result | None = None
    error: JobError | None = None
    webhook: dict[str, Any] | None = None
    #: Where the result was also written into the vendor's own table (``{"state": "written"}`` ...).
    writeback: dict[str, Any] | None = None
    client: Client | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, data: dict[str, Any], client: Client | None = None) -> Job:
        result, error = data.get("result"), data.get("error")
        return cls(
            id=data["job_id"],
            state=data["state"],
            type=data.get("type"),
            record_id=data.get("record_id"),
            batch_id=data.get("batch_id"),
            progress=data.get("progress", 0),
            stage=data.get("stage", "queued"),
            attempts=data.get("attempts", 0),
            max_attempts=data.get("max_attempts"),
            created_at=data.get("created_at"),
            started_at=data.get("started_at"),
            ended_at=data.get("ended_at"),
            result=Result.of(result, getattr(client, "base_url", None)) if result else None,
            error=JobError(error["code"], error.get("message", ""), error.get("retryable", False))
            if error
            else None,
            webhook=data.get("webhook"),
            writeback=data.get("writeback"),
            client=client,
        )

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def _client(self) -> Client:
        if self.client is None:
            raise RuntimeError("this Job was not made by a Client")
        return self.client

    def refresh(self) -> Job:
        return self._client().job(self.id)

    def cancel(self) -> Job:
        return self._client().cancel(self.id)

    def events(self) -> Iterator[Job]:
        """The job's status at each change, from its event stream, until it has ended."""
        for _kind, data in self._client().stream(f"/job/{self.id}/events"):
            yield Job.of(data, self.client)

    def wait(self, timeout: float = 600, progress: Callable[[Job], None] | None = None) -> Job:
        """The job once it has ended: followed on its event stream, or polled when the stream fails."""
        return _wait(self, timeout, progress, self.events, self.refresh)


@dataclass
class Batch:
    """A bulk request's status: counts per state, overall progress and each job's state."""

    id: str
    total: int
    counts: dict[str, int]
    progress: int
    done: int
    type: str | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    client: Client | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, data: dict[str, Any], client: Client | None = None) -> Batch:
        jobs = data.get("jobs", [])
        return cls(
            id=data["batch_id"],
            total=data.get("total", len(jobs)),
            counts=data.get("counts", {}),
            progress=data.get("progress", 0),
            done=data.get("done", 0),
            type=data.get("type"),
            jobs=jobs,
            job_ids=[j["job_id"] for j in jobs] or data.get("job_ids", []),
            client=client,
        )

    @property
    def ended(self) -> bool:
        return bool(self.jobs) and all(j["state"] in ENDED for j in self.jobs)

    def _client(self) -> Client:
        if self.client is None:
            raise RuntimeError("this Batch was not made by a Client")
        return self.client

    def refresh(self) -> Batch:
        return self._client().batch(self.id)

    def events(self) -> Iterator[Batch]:
        for _kind, data in self._client().stream(f"/batch/{self.id}/events"):
            yield Batch.of(data, self.client)

    def wait(self, timeout: float = 3600, progress: Callable[[Batch], None] | None = None) -> Batch:
        """The batch once every job has ended; ``progress`` gets each status on the way."""
        return _wait(self, timeout, progress, self.events, self.refresh)

    def results(self) -> list[Job]:
        """Every job of the batch, as it is now."""
        return [self._client().job(job_id) for job_id in self.job_ids]


def _on_change(progress: Callable[[Any], None]) -> Callable[[Any], None]:
    """``progress``, called only when the status differs from the one it was last given.

    The stream's first event is the status the caller already holds, and a poll often repeats the
    last one: a caller counting or printing calls should see each status once.
    """
    last: list[Any] = []

    def call(current) -> None:
        if not last or current != last[0]:
            last[:] = [current]
            progress(current)

    return call


def _wait(current, timeout: float, progress, events: Callable[[], Iterator], refresh: Callable[[], Any]):
    deadline = time.monotonic() + timeout
    if progress:
        progress = _on_change(progress)
        progress(current)
    try:
        for current in events():
            if progress:
                progress(current)
            if current.ended:
                return current
            if time.monotonic() > deadline:
                break
    except ApiError as exc:
        if exc.status in (401, 404):  # the stream would not do better than the poll: say so
            raise
    except Exception:  # the stream broke (a proxy, an old API): poll instead
        pass
    pause = 0.25
    while time.monotonic() < deadline:
        current = refresh()
        if progress:
            progress(current)
        if current.ended:
            return current
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 5.0)
    raise Timeout(
        "timeout", f"not ended after {timeout:g} s (last state: {getattr(current, 'state', '?')})", 0
    )
