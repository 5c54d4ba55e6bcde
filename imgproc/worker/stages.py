"""A job attempt's stages: saved with an event at most every ``SAVE_EVERY`` s, the last with the job's end.

Each save writes the job's state (``imgproc.queueing.state``) and appends its
status to the job's event stream in one round trip; the first of an attempt is
its ``state`` event (it started), the others ``progress``. The last stage
(``done``) is not saved by the task: the worker writes it in the transaction
that ends the job (``ImgprocWorker.handle_job_success``), with the events,
usage and fair-share release of the end, so a light job's whole end is one
round trip (it was five: measured with ``bench``'s light phase, see the README).

A stop (``DELETE`` of a started job: rq's stop-job command, ``JobEnds.kill_horse``)
sets the attempt's flag; the next stage it reaches raises ``JobStopped``, so the
step in hand (an inference) finishes and nothing after it runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rq.job import Job, _job_stack

from imgproc.config import Settings
from imgproc.errors import PermanentError
from imgproc.identifiers import shown
from imgproc.queueing import events, usage
from imgproc.queueing.state import JobState
from imgproc.queueing.views import job_view

#: A stage reached sooner than this after the last save stays in memory until the next one: nobody can
#: poll that fast, and each save is a Redis round trip (a light job has five stages).
SAVE_EVERY = 0.1


class JobStopped(PermanentError):
    """Raised at the first stage boundary after a stop was asked for (the job ends ``stopped``)."""

    code = "stopped"


class Stages:
    """The stages of one attempt of ``job``, saved at most every ``SAVE_EVERY`` seconds unless forced."""

    def __init__(self, job: Job, settings: Settings):
        self.job = job
        self.state = JobState.of(job)
        self.settings = settings
        self.saved = time.monotonic()  # rq has just saved the job: stages before 100 ms stay in memory
        self.kind = events.STATE
        #: The ``done`` stage's event, for the worker to write with the job's end (``write_done``).
        self.done: dict[str, Any] | None = None
        #: Set by another thread (rq's pubsub thread) when a stop of this job arrives.
        self.stopped = threading.Event()

    def stop(self) -> None:
        """Ask the attempt to stop at its next stage boundary (safe from any thread)."""
        self.stopped.set()

    def reach(self, stage: str, force: bool = False) -> None:
        """The attempt is at ``stage``: saved now if forced or due (``done``: with the job's end).

        Raises ``JobStopped`` instead when a stop has arrived, the stage shown staying the last one
        reached. Not at ``done``: the result is uploaded and saved by then, and the job finishes.
        """
        if stage != "done" and self.stopped.is_set():
            raise JobStopped(f"stopped on request during the {self.state.stage} stage")
        self.state.reach(stage)
        if stage == "done":
            # The view as it is now, while the job is still started: the end's transaction writes it.
            self.done = job_view(self.job, self.settings)
            return
        if force or time.monotonic() - self.saved >= SAVE_EVERY:
            with self.job.connection.pipeline(transaction=False) as pipe:
                self._write(pipe, job_view(self.job, self.settings))
                pipe.execute()

    def write_done(self, pipe) -> None:
        """On ``pipe``, the ``done`` stage: the state, its event and the vendor's megapixels of today."""
        self._write(pipe, self.done or job_view(self.job, self.settings))
        if self.state.megapixels:
            usage.add(pipe, self.state.vendor, megapixels=self.state.megapixels)

    def _write(self, pipe, view: dict[str, Any]) -> None:
        self.state.write(pipe, self.job)
        events.publish(pipe, view, self.kind, self.settings.failure_ttl)
        self.saved, self.kind = time.monotonic(), events.PROGRESS


class ImgprocJob(Job):
    """An rq job with its attempt's ``Stages``, read with its description's control characters escaped.

    The worker gives an image job its stages before running it (``ImgprocWorker.perform_job``); the
    task reaches them, the end's transaction writes the last. rq logs the description at each
    dequeue: it holds the record id, and one stored before the API refused control characters
    forged a line of the worker's log.
    """

    #: The running attempt's stages; None outside an image job's attempt.
    stages: Stages | None = None

    def restore(self, raw_data) -> None:
        super().restore(raw_data)
        if self.description:
            self.description = shown(self.description)

    def prepare_for_execution(self, worker_name: str, pipeline) -> None:
        # rq's, and the PERSIST that rq's perform() sends in a round trip of its own (see perform).
        super().prepare_for_execution(worker_name, pipeline)
        pipeline.persist(self.key)

    def perform(self):
        # rq's perform() less its PERSIST, which prepare_for_execution has sent in rq's transaction
        # just before: one round trip per job less. rq's job stack is what get_current_job() reads.
        _job_stack.push(self)
        try:
            self._result = self._execute()
        finally:
            assert self is _job_stack.pop()
        return self._result
