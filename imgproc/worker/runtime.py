"""What a job gets from its worker process: built once at start-up, handed to every job.

Each field is typed by the contract of the part it stands for (a Protocol at
the head of its module), so a test can build a ``Runtime`` of fakes. A job's
data goes ``tasks.run`` -> ``fetcher`` (or the upload in Redis) -> the
operation with ``tools`` -> ``storage`` -> ``records``. ``Runtime.build``
wires one from the settings (the worker's ``load``, the tests, the bench);
only fakes are put together by hand.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

import redis
import sqlalchemy as sa

from imgproc.adapters.db import make_engine
from imgproc.adapters.fetch import Fetcher, PhotoFetcher
from imgproc.adapters.records import Records, ResultWriter
from imgproc.adapters.storage import Storage, make_storage
from imgproc.adapters.webhooks import WebhookMessages, WebhookStore
from imgproc.adapters.writeback import ResultTargets, Writeback
from imgproc.config import Settings
from imgproc.jobtypes import FACE, MATTING, QUEUES, models_for
from imgproc.metrics import Discard, Metrics, Recorder
from imgproc.processing.batching import MicroBatcher
from imgproc.processing.models import BackgroundRemover, FaceDetector, FaceFinder, Matting
from imgproc.processing.operations import Tools
from imgproc.queueing import redis_for
from imgproc.queueing.hosts import HostPeers

log = logging.getLogger(__name__)
#: Seconds between two counts of the host's inference workers (each one pipelined round trip).
RECOUNT_INTERVAL = 5

#: The runtime of the job running now: set by the worker around each job, read by ``tasks.run``.
#: (rq calls a job's function with the job's stored arguments only; a runtime is not one of them.)
current: ContextVar[Runtime] = ContextVar("imgproc_runtime")


class Remover(Matting, Protocol):
    """The background-removal models as their worker uses them (``BackgroundRemover``): masks, and more."""

    #: The micro-batcher of each model (``IMGPROC_BATCH`` > 1); empty without batching.
    batchers: dict[str, MicroBatcher]

    @property
    def provider(self) -> str:
        """The execution provider the models really run on (``CPUExecutionProvider``, ...)."""
        ...

    def retune(self, workers: int) -> bool:
        """Rebuild the sessions for one of ``workers`` processes on this host; whether anything changed."""
        ...


@dataclass
class Runtime:
    """The services and models of one worker process."""

    settings: Settings
    conn: redis.Redis
    fetcher: PhotoFetcher
    storage: Storage
    records: ResultWriter
    remover: Remover | None = None
    detector: FaceFinder | None = None
    metrics: Metrics = field(default_factory=Discard)
    webhooks: WebhookMessages | None = None
    #: The vendors' own tables (``IMGPROC_WRITEBACK_FILE``), checked at load; None when not configured.
    writeback: ResultTargets | None = None
    #: This process among its host's inference workers, whose count sets its threads (``retune``);
    #: None where the threads are fixed (``IMGPROC_THREADS``, ``IMGPROC_WORKERS_PER_HOST``, GPU, batching).
    peers: HostPeers | None = None
    #: The records' database, disposed by ``close`` (None in a runtime of fakes).
    engine: sa.Engine | None = None
    #: Whether ``close`` closes the models too: those ``load`` loaded, not those a caller handed in.
    owns_models: bool = False
    _counted: float = 0.0
    _workers: int = 1

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        conn: redis.Redis | None = None,
        remover: Remover | None = None,
        detector: FaceFinder | None = None,
        queues: tuple[str, ...] = QUEUES,
    ) -> Runtime:
        """Connect the services of ``settings``; Redis and the models as given (None: Redis from the
        settings, no models). ``queues``: those of the image job types write back (webhooks' do not).

        A broken write-back target stops here (``WritebackInvalid``), at start, never at a first job.
        """
        writeback = Writeback.from_settings(settings) if set(queues) & set(QUEUES) else None
        if writeback is not None:
            writeback.require()
        conn = conn if conn is not None else redis_for(settings)
        engine = make_engine(settings)
        return cls(
            settings=settings,
            conn=conn,
            fetcher=Fetcher(settings),
            storage=make_storage(settings),
            records=Records(engine, max_fields=settings.db_max_fields),
            remover=remover,
            detector=detector,
            metrics=Recorder(conn).start() if settings.metrics else Discard(),
            webhooks=WebhookStore(engine, grace=settings.webhook_secret_grace),
            writeback=writeback,
            engine=engine,
        )

    @classmethod
    def load(cls, settings: Settings, queues: tuple[str, ...] = QUEUES) -> Runtime:
        """A worker's runtime: the models of its queues' job types loaded (a missing one stops here)."""
        models = models_for(queues)
        conn = redis_for(settings)
        peers, workers, remover = None, 1, None
        if MATTING in models:
            if settings.workers_per_host == 0 and settings.threads == 0:
                # Counted before loading, so replicas started together see each other at once.
                peers = HostPeers(conn, f"{socket.gethostname()}:{os.getpid()}")
                workers = _count(peers)
            remover = BackgroundRemover(settings, workers)
            if peers is not None and not remover.follows_host:  # on a GPU, or batching: threads fixed
                _leave(peers)
                peers = None
        detector = FaceDetector(settings) if FACE in models else None
        try:
            runtime = cls.build(settings, conn=conn, remover=remover, detector=detector, queues=queues)
        except Exception:
            if peers is not None:  # a broken write-back target, say: this process is not one of the host's
                _leave(peers)
            raise
        runtime.peers, runtime.owns_models = peers, True
        return runtime

    @property
    def provider(self) -> str:
        """The execution provider this process's ONNX models really run on (``none`` without one)."""
        return self.remover.provider if self.remover is not None else "none"

    @property
    def tools(self) -> Tools:
        """What the operations get of this process."""
        return Tools(
            max_pixels=self.settings.max_image_pixels,
            max_output_pixels=self.settings.max_output_pixels,
            max_matting_pixels=self.settings.max_matting_pixels,
            png_level=self.settings.png_compress_level,
            bg_model=self.settings.bg_model,
            remover=self.remover,
            detector=self.detector,
            matting_cache=str(self.settings.matting_cache_dir),
            fetch=self.fetcher.fetch,
            review_threshold=self.settings.review_threshold,
        )

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Make this the runtime of the job that runs inside the block."""
        token = current.set(self)
        try:
            yield
        finally:
            current.reset(token)

    def reload_writeback(self) -> None:
        """Read ``IMGPROC_WRITEBACK_FILE`` again before the next write-back (a worker's SIGHUP)."""
        if self.writeback is not None:
            self.writeback.request_reload()

    def follow_host(self, *, retune: bool = True) -> None:
        """Beat among the host's inference workers (at most every few seconds); follow their count.

        ``retune``: rebuild the model sessions if this process's share of the cores changed (between
        jobs only; the heartbeat thread of a running job only keeps its place).
        """
        if self.peers is None:
            return
        if time.monotonic() - self._counted >= RECOUNT_INTERVAL:
            self._counted = time.monotonic()
            self._workers = _count(self.peers)
        if retune and self.remover is not None:  # a no-op while the count stays the same
            self.remover.retune(self._workers)

    def close(self) -> None:
        if self.peers is not None:
            _leave(self.peers)
        self.metrics.close()
        self.fetcher.close()
        if self.writeback is not None:
            self.writeback.close()
        if self.engine is not None:
            self.engine.dispose()
        if self.owns_models and self.detector is not None:
            self.detector.close()


def _count(peers: HostPeers) -> int:
    try:
        return peers.beat()
    except redis.RedisError as exc:  # the worker waits for Redis anyway; count itself alone meanwhile
        log.warning("could not count this host's workers: %s", exc)
        return 1


def _leave(peers: HostPeers) -> None:
    try:
        peers.leave()
    except redis.RedisError:  # its beat expires within hosts.TTL
        pass
