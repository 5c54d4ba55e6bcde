"""The webhook deliveries an image worker makes on a thread of its own (``IMGPROC_WEBHOOK_THREAD``).

Webhooks wait on their own queue so that no receiver ever holds an image job
back; before this thread, only a ``python worker.py --queues webhooks`` worker
served that queue, and plain ``python worker.py`` replicas (the documented
unit of scale) left every webhook pending for good. Now every image worker
serves it too, from a second rq worker (``<name>.webhooks``) in a thread: a
slow receiver holds that thread, never the image jobs (it waits on a socket,
the GIL released). Dedicated webhook workers still work beside it.

The thread's worker shares the process's runtime (its fetcher, its webhook
store, its Redis pool), less its models and its place among the host's
inference workers, so that only the main thread ever rebuilds the sessions. It runs no
scheduler of its own: the image worker's scheduler also moves the webhooks
queue's retries (``ImgprocWorker.also_scheduled``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import redis
from rq.worker import WorkerStatus

from imgproc.jobtypes import QUEUE_WEBHOOKS

from .runtime import Runtime
from .slots import SlotWorker

log = logging.getLogger("imgproc.webhooks")


class DeliveryThread:
    """A webhook worker named ``<name>.webhooks`` in a daemon thread, started and stopped with its process."""

    def __init__(self, runtime: Runtime, name: str, burst: bool = False):
        self.name, self.burst = name, burst
        # No models (its worker records provider 'none') and no place among the host's inference workers.
        self.runtime = dataclasses.replace(runtime, peers=None, remover=None, detector=None)
        self.stopping = threading.Event()
        self.worker = self._worker()
        self.thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def _worker(self, restart: int = 0) -> SlotWorker:
        return SlotWorker(
            [QUEUE_WEBHOOKS],
            connection=self.runtime.conn,
            runtime=self.runtime,
            name=f"{self.name}.webhooks" + (f".{restart}" if restart else ""),
            default_result_ttl=self.runtime.settings.result_ttl,
        )

    def start(self) -> DeliveryThread:
        self.thread.start()
        return self

    def _run(self) -> None:
        restarts = 0
        while True:
            try:
                self.worker.work(burst=self.burst, with_scheduler=False, logging_level="INFO")
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("webhook deliveries paused without Redis: %s", exc)
            if self.burst or self.stopping.is_set():
                return
            while not self.stopping.wait(1.0):  # Redis is back, or rq left its loop for good
                try:
                    self.runtime.conn.ping()
                    break
                except redis.RedisError:
                    continue
            if self.stopping.is_set():
                return
            restarts += 1
            self.worker = self._worker(restarts)

    def stop(self) -> None:
        """Stop after the delivery in hand (a receiver has ``IMGPROC_WEBHOOK_TIMEOUT`` to answer).

        An idle thread waits in a blocking dequeue for up to ``FEED_INTERVAL``: the process does not wait
        for it, but unregisters its worker now, so that ``/health`` stops counting it at once.
        """
        self.stopping.set()
        self.worker.stop_soon()
        deadline = time.monotonic() + self.runtime.settings.webhook_timeout + 5
        while self.thread.is_alive() and time.monotonic() < deadline:
            if self.worker.get_state() != WorkerStatus.BUSY:
                break
            self.thread.join(0.1)
        if not self.thread.is_alive():
            return
        if self.worker.get_state() == WorkerStatus.BUSY:
            log.warning("a webhook delivery was still running at the stop; another worker will retry it")
        try:
            self.worker.register_death()
        except redis.RedisError:
            pass  # its registration expires with its heartbeat
