"""One ``session.run`` for the inferences of several jobs: a micro-batcher in front of a session.

    MicroBatcher(run, size, wait)   ``infer(x)`` from any thread; ``runs`` counts the session's runs

A worker with ``IMGPROC_BATCH`` job slots calls ``infer`` from each slot's
thread with one image's input (1, C, H, W). The first caller of a round waits
at most ``wait`` seconds for others (or until ``size`` are in), stacks them and
runs them at once; each caller gets its own row back. An error of the batched
run falls back to one run per input, so one bad input fails only its own job.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class MicroBatcher:
    """Gathers concurrent ``infer`` calls into one batched ``run`` of at most ``size`` inputs."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], size: int, wait: float):
        self._run = run
        self.size = max(1, size)
        self.wait = wait
        self._lock = threading.Lock()
        self._pending: list[tuple[np.ndarray, Future]] = []
        self._full = threading.Condition(self._lock)
        #: Batch sizes of the last runs, in order (the tests read it), and of all runs, counted.
        self.runs: deque[int] = deque(maxlen=10_000)
        self.sizes: Counter[int] = Counter()

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The model's output row for one input of shape (1, ...), run together with concurrent calls."""
        done: Future = Future()
        with self._lock:
            self._pending.append((x, done))
            leader = len(self._pending) == 1
            if len(self._pending) >= self.size:
                self._full.notify()
        if leader:
            self._lead()
        return done.result()

    def _lead(self) -> None:
        """Wait for the batch to fill or ``wait`` to pass, then run every input taken so far."""
        deadline = time.monotonic() + self.wait
        with self._lock:
            while len(self._pending) < self.size:
                left = deadline - time.monotonic()
                if left <= 0 or not self._full.wait(left):
                    break
            batch, self._pending = self._pending[: self.size], self._pending[self.size :]
            if self._pending:  # over-full: the first of the rest leads the next round
                threading.Thread(target=self._lead, name="batch-leader", daemon=True).start()
        self._execute(batch)

    def _count(self, size: int) -> None:
        self.runs.append(size)
        self.sizes[size] += 1

    def _execute(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        if len(batch) > 1:
            try:
                out = self._run(np.concatenate([x for x, _ in batch]))
                self._count(len(batch))
            except Exception:  # noqa: BLE001 - retried one by one below; each input gets its own error
                out = None
            if out is not None:
                for i, (_, done) in enumerate(batch):
                    done.set_result(out[i : i + 1])
                return
        for x, done in batch:
            try:
                result = self._run(x)
                self._count(1)
                done.set_result(result)
            except Exception as exc:  # noqa: BLE001 - handed to the job that owns this input
                done.set_exception(exc)
