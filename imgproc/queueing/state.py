"""A job's state beside its payload: the one module that names the keys rq keeps in ``job.meta``.

After arq's ``JobDef``: the payload (``imgproc.jobtypes.Payload``) is what the
vendor asked for and never changes; ``JobState`` is what happened to it since
(stage, progress, attempts, the error, the output, the write-back and the
webhook), typed here and stored in rq's ``meta`` under the keys below.

The stored keys are the ones imgproc has always written, so a job already in
Redis reads the same (``tests/test_job_state.py`` reads one enqueued by the
code before this module). ``vendor``, ``type`` and ``record_id`` are in both
the payload and the state on purpose: the vendor check of every read and a
batch's view read only the meta field (``HMGET``), never the whole job.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job
from rq.serializers import resolve_serializer

#: rq's default serializer, which stores every job's meta.
SERIALIZER = resolve_serializer()

#: Progress of each stage, 0-100, as API.md lists them.
STAGES = {"queued": 0, "fetching": 10, "inference": 30, "uploading": 80, "saving": 90, "done": 100}


class JobState:
    """One job's state: typed reads and writes of its meta dict.

    It wraps the job's own dict, not a copy: rq writes ``job.meta`` when it saves
    a failed job and in ``save_meta``, so what is set here is what rq stores.
    """

    __slots__ = ("meta",)

    def __init__(self, meta: dict[str, Any]):
        self.meta = meta

    @classmethod
    def of(cls, job: Job) -> JobState:
        return cls(job.meta)

    @classmethod
    def loads(cls, raw: bytes | None) -> JobState:
        """The state of a job's stored ``meta`` field (``HMGET``), empty when it has none."""
        return cls(SERIALIZER.loads(raw) if raw else {})

    @classmethod
    def new(
        cls, *, vendor: str, job_type: str, record_id: str, batch_id: str | None, max_attempts: int
    ) -> JobState:
        """The state of a job being enqueued."""
        return cls(
            {
                "vendor": vendor,
                "type": job_type,
                "record_id": record_id,
                "batch_id": batch_id,
                "progress": 0,
                "stage": "queued",
                "attempts": 0,
                "max_attempts": max_attempts,
            }
        )

    def write(self, pipe, job: Job) -> None:
        """The state's save on ``pipe``: rq's ``Job.save_meta``, in the caller's round trip."""
        pipe.hset(job.key, "meta", job.serializer.dumps(self.meta))

    # What the vendor asked for (copies of the payload's, see the module's docstring).

    @property
    def vendor(self) -> str:
        return self.meta.get("vendor") or ""

    @property
    def type(self) -> str | None:
        return self.meta.get("type")

    @property
    def record_id(self) -> str | None:
        return self.meta.get("record_id")

    @property
    def batch_id(self) -> str | None:
        return self.meta.get("batch_id")

    # Where the job is.

    @property
    def stage(self) -> str:
        return self.meta.get("stage", "queued")

    @property
    def progress(self) -> int:
        return self.meta.get("progress", 0)

    def reach(self, stage: str) -> None:
        """The job is at ``stage``; progress never goes down, not even when a retry starts over."""
        self.meta["stage"] = stage
        self.meta["progress"] = max(self.progress, STAGES[stage])

    # Attempts.

    @property
    def attempts(self) -> int:
        return self.meta.get("attempts", 0)

    def max_attempts(self, default: int) -> int:
        return self.meta.get("max_attempts", default)

    def begin_attempt(self) -> None:
        """An attempt starts: counted, and the previous one's error is no longer the job's."""
        self.meta["attempts"] = self.attempts + 1
        self.meta.pop("error", None)

    def count_lost_attempt(self, retries_left: int) -> None:
        """An attempt whose worker died counts, also when it died before saving its first stage."""
        max_attempts = self.meta.get("max_attempts")
        if max_attempts:
            self.meta["attempts"] = max(self.attempts, max_attempts - retries_left)

    # Outcome.

    @property
    def error(self) -> dict | None:
        return self.meta.get("error")

    @error.setter
    def error(self, error: dict) -> None:
        self.meta["error"] = error

    @property
    def output(self) -> dict | None:
        """The uploaded result, kept so that a retry after a failed write-back does not upload it again."""
        return self.meta.get("output")

    @output.setter
    def output(self, output: dict) -> None:
        self.meta["output"] = output

    @property
    def megapixels(self) -> float | None:
        return self.meta.get("megapixels")

    @megapixels.setter
    def megapixels(self, value: float) -> None:
        self.meta["megapixels"] = value

    @property
    def saved(self) -> bool:
        """Whether the records row is written: a retry from there on writes nothing again."""
        return bool(self.meta.get("saved"))

    def mark_saved(self) -> None:
        self.meta["saved"] = True

    @property
    def writeback(self) -> dict | None:
        """The vendor's own row (IMGPROC_WRITEBACK_FILE): written, not_found, pending..."""
        return self.meta.get("writeback")

    @writeback.setter
    def writeback(self, state: dict) -> None:
        self.meta["writeback"] = state

    @property
    def webhook(self) -> dict | None:
        """Its webhook's delivery, when the request named a webhook_url and the job has ended."""
        return self.meta.get("webhook")

    @webhook.setter
    def webhook(self, state: dict) -> None:
        self.meta["webhook"] = state

    def reset_for_retry(self, max_attempts: int) -> None:
        """A failed job an operator retries: its run starts clean, what is history stays.

        The error and the output go (the photo is processed again); progress stays (it never goes
        down) and so do the attempts, with ``max_attempts`` more on top. ``saved`` and ``writeback``
        stay too: the records row and the vendor's row were written for a result URL that the new
        run's upload (same storage key) replaces in place, so neither is written twice.
        """
        self.meta.pop("error", None)
        self.meta.pop("output", None)
        self.meta["stage"] = "queued"
        self.meta["max_attempts"] = self.attempts + max_attempts
