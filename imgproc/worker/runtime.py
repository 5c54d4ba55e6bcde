"""What a job gets from its worker process: built once at start-up, handed to every job.

Each field is typed by the contract of the part it stands for (a Protocol at
the head of its module), so a test can build a ``Runtime`` of fakes. A job's
data goes ``tasks.run`` -> ``fetcher`` (or the upload in Redis) -> the
operation with ``tools`` -> ``storage`` -> ``records``.
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

import redis

from imgproc.adapters.db import make_engine
from imgproc.adapters.fetch import Fetcher, PhotoFetcher
from imgproc.adapters.records import Records, ResultWriter
from imgproc.adapters.storage import Storage, make_storage
from imgproc.adapters.webhooks import WebhookMessages, WebhookStore
from imgproc.adapters.writeback import ResultTargets, Writeback
from imgproc.config import Settings
from imgproc.jobtypes import FACE, MATTING, QUEUES, models_for
from imgproc.metrics import Discard, Metrics, Recorder
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


@dataclass
class Runtime:
    """The services and models of one worker process."""

    settings: Settings
    conn: redis.Redis
    fetcher: PhotoFetcher
    storage: Storage
    records: ResultWriter
    remover: Matting | None = None
    detector: FaceFinder | None = None
    metrics: Metrics = field(default_factory=Discard)
    webhooks: WebhookMessages | None = None
    #: The vendors' own tables (``IMGPROC_WRITEBACK_FILE``), checked at load; None when not configured.
    writeback: ResultTargets | None = None
    #: This process among its host's inference workers, whose count sets its threads (``retune``);
    #: None where the threads are fixed (``IMGPROC_THREADS``, ``IMGPROC_WORKERS_PER_HOST``, GPU, batching).
    peers: HostPeers | None = None
    _counted: float = 0.0
    _workers: int = 1

    @classmethod
    def load(cls, settings: Settings, queues: tuple[str, ...] = QUEUES) -> Runtime:
        """Connect the services, load the models of the queues' job types (a missing one stops here)."""
        models = models_for(queues)
        # A broken target stops the worker here, like a missing model, never at its first job.
        writeback = Writeback.from_settings(settings) if set(queues) & set(QUEUES) else None
        if writeback is not None:
            writeback.require()
        conn = redis_for(settings)
        engine = make_engine(settings)
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
        return cls(
            settings=settings,
            conn=conn,
            fetcher=Fetcher(settings),
            storage=make_storage(settings),
            records=Records(engine, max_fields=settings.db_max_fields),
            remover=remover,
            detector=FaceDetector(settings) if FACE in models else None,
            metrics=Recorder(conn).start() if settings.metrics else Discard(),
            webhooks=WebhookStore(engine, grace=settings.webhook_secret_grace),
            writeback=writeback,
            peers=peers,
        )

    @property
    def provider(self) -> str:
        """The execution provider this process's ONNX models really run on (``none`` without one)."""
        return self.remover.provider if hasattr(self.remover, "provider") else "none"

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
        if isinstance(self.writeback, Writeback):
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
        if retune and hasattr(self.remover, "retune"):  # a no-op while the count stays the same
            self.remover.retune(self._workers)

    def close(self) -> None:
        if self.peers is not None:
            _leave(self.peers)
        self.metrics.close()
        self.fetcher.close()
        if isinstance(self.writeback, Writeback):
            self.writeback.close()
        if self.detector is not None:
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
