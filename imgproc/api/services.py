"""What the API's views share, built once per app from ``Settings``: a leaf module, never the factory.

Each field is typed by the contract of the part it stands for, so a test can
hand ``create_app`` nothing but the settings and read the real ones here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import redis
import sqlalchemy as sa
from flask import current_app, request
from rq.job import Job

from imgproc.adapters.db import make_engine
from imgproc.adapters.storage import Storage, make_storage
from imgproc.adapters.urls import UrlPolicy
from imgproc.adapters.vendors import CachedVendors, VendorDirectory, Vendors
from imgproc.config import Settings
from imgproc.metrics import Discard, Metrics, Recorder
from imgproc.queueing import JobQueue, NewJob, redis_for
from imgproc.queueing.eventreader import EventReader
from imgproc.queueing.openstreams import OpenStreams


class JobStore(Protocol):
    """The queue as the views use it: enqueue for a vendor, read back only the vendor's own."""

    def enqueue(self, new: list[NewJob], *, batch: bool = False) -> tuple[str | None, list[Job]]: ...

    def claim(self, vendor: str, key: str) -> tuple[str, Job | None]: ...

    def release(self, vendor: str, key: str) -> None: ...

    def cancel(self, job: Job) -> None: ...

    def job_for(self, vendor: str, job_id: str, *, operator: bool = False) -> Job: ...

    def job_view(self, job: Job, base: str = "") -> dict[str, Any]: ...

    def batch_view(self, vendor: str, batch_id: str, *, operator: bool = False) -> dict[str, Any]: ...

    def stats(self, vendor: str, *, operator: bool = False) -> dict[str, Any]: ...

    def workers(self) -> int: ...

    def load(self) -> dict[str, dict[str, int]]: ...


@dataclass
class Services:
    """What the request handlers use."""

    settings: Settings
    conn: redis.Redis
    engine: sa.Engine
    jobs: JobStore
    vendors: VendorDirectory
    storage: Storage
    metrics: Metrics
    #: The event streams' reader (a Redis client of its own) and each vendor's count of open streams.
    events: EventReader
    open_streams: OpenStreams

    @classmethod
    def build(cls, settings: Settings) -> Services:
        conn = redis_for(settings)
        engine = make_engine(settings)
        return cls(
            settings,
            conn,
            engine,
            JobQueue(conn, settings),
            CachedVendors(Vendors(engine)),
            make_storage(settings),
            Recorder(conn).start() if settings.metrics else Discard(),
            EventReader(redis_for(settings), conn),
            OpenStreams(conn, settings.max_streams_per_vendor),
        )

    @cached_property
    def url_policy(self) -> UrlPolicy:
        """Where webhook URLs may point: checked at enqueue, as the fetcher checks them at delivery."""
        return UrlPolicy.from_settings(self.settings)


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["imgproc"]


def result_base() -> str:
    """Base of the result URLs this request is answered with: ``IMGPROC_PUBLIC_URL``, else its own address.

    The request's scheme, host, port and root path, as a trusted proxy forwarded them
    (``IMGPROC_TRUSTED_PROXIES``), or as it reached the API.
    """
    return services().settings.public_url or request.root_url
