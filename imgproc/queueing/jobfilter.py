"""What jobs a search or a bulk action is about: ``JobFilter``, parsed once from a query or a body,
and the opaque cursor that carries it from one page to the next (``imgproc.queueing.search``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from imgproc import identifiers
from imgproc.errors import InvalidRequest
from imgproc.jobtypes import JOB_TYPES

from .keys import STATES
from .state import JobState

#: Longest record id (191, API.md) and its trailing ``*``; longest batch id.
RECORD_ID_MAX = 192
BATCH_ID_MAX = 64


def _time(name: str, value: Any) -> float:
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be an ISO 8601 time", details={"field": name})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 time such as 2025-05-01T12:00:00Z", details={"field": name}
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobFilter:
    """What jobs a search or a bulk action is about; None is "any". Times are epoch seconds.

    ``record_id`` ending in ``*`` is a prefix; ``created_after`` is inclusive, ``created_before``
    exclusive (consecutive windows never share a job). ``vendor`` None: every vendor's (an operator's).
    """

    vendor: str | None = None
    record_id: str | None = None
    state: str | None = None
    type: str | None = None
    batch_id: str | None = None
    created_after: float | None = None
    created_before: float | None = None

    @classmethod
    def parse(cls, values: Mapping[str, Any], *, strict: bool = False) -> JobFilter:
        """A filter from a query string's or a JSON body's fields; 400 naming a bad one.

        ``strict``: a field that is not a filter's is refused too (a bulk action's body: a misspelt
        filter must not widen what is cancelled).
        """
        names = {f.name for f in fields(cls)}
        if strict:
            for name in values:
                if name not in names:
                    raise InvalidRequest(f"unknown filter {name!r}", details={"field": name})
        found: dict[str, Any] = {}
        for name in names:
            value = values.get(name)
            if value is None or value == "":
                continue
            if name.startswith("created_"):
                found[name] = _time(name, value)
                continue
            if not isinstance(value, str):
                raise InvalidRequest(f"{name} must be a string", details={"field": name})
            found[name] = value
        flt = cls(**found)
        flt._check()
        return flt

    def _check(self) -> None:
        def bad(name: str, why: str) -> InvalidRequest:
            return InvalidRequest(f"{name} {why}", details={"field": name})

        if self.state is not None and self.state not in STATES:
            raise bad("state", f"must be one of {', '.join(STATES)}")
        if self.type is not None and self.type not in JOB_TYPES:
            raise bad("type", f"must be one of {', '.join(JOB_TYPES)}")
        for name, most in (("record_id", RECORD_ID_MAX), ("batch_id", BATCH_ID_MAX), ("vendor", 64)):
            value = getattr(self, name)
            if value is None:
                continue
            if len(value) > most:
                raise bad(name, f"must be at most {most} characters")
            if problem := identifiers.problem(value):
                raise bad(name, problem)
        if self.record_id == "*":
            raise bad("record_id", "must hold a prefix before its '*'")
        after, before = self.created_after, self.created_before
        if after is not None and before is not None and after >= before:
            raise bad("created_after", "must be before created_before")

    @property
    def prefix(self) -> str | None:
        """The record id's prefix when it ends in ``*``."""
        return self.record_id[:-1] if self.record_id and self.record_id.endswith("*") else None

    def given(self) -> dict[str, str]:
        """The fields given, times as ISO 8601 (the audit log's details, the CLI's echo)."""
        shown = {}
        for name, value in asdict(self).items():
            if value is not None:
                shown[name] = _iso(value) if name.startswith("created_") else value
        return shown

    def target(self) -> str:
        """The audit log's target of an action on the filter's jobs: ``filter:vendor=acme&state=failed``."""
        return "filter:" + urlencode(self.given(), safe="*:")  # a prefix reads as typed: emp-00*

    def admits(self, status: str | None, state: JobState | None, score: float) -> bool:
        """Whether a job (its status, its state, its index score) is one this filter finds.

        ``state`` None: the job's vendor, type, batch and record are the set's it was read from.
        """
        if status is None:
            return False
        if self.state is not None and status != self.state:
            return False
        if state is None:
            return self.in_range(score)
        if self.vendor is not None and state.vendor != self.vendor:
            return False
        if self.type is not None and state.type != self.type:
            return False
        if self.batch_id is not None and state.batch_id != self.batch_id:
            return False
        record = state.record_id or ""
        if self.record_id is not None and not (
            record.startswith(self.prefix) if self.prefix is not None else record == self.record_id
        ):
            return False
        return self.in_range(score)

    def in_range(self, score: float) -> bool:
        after, before = self.created_after, self.created_before
        return (after is None or score >= after) and (before is None or score < before)


def encode_cursor(flt: JobFilter, score: float, job_id: str) -> str:
    """An opaque cursor: the filter and the place after which the next page starts."""
    raw = json.dumps({"f": asdict(flt), "s": score, "i": job_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[JobFilter, tuple[float, str]]:
    """The filter and place of a cursor; 400 naming ``cursor`` for one this service did not write."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        after = (float(raw["s"]), str(raw["i"]))
        given = {k: v for k, v in raw["f"].items() if v is not None}
        times = {k: _iso(float(given.pop(k))) for k in ("created_after", "created_before") if k in given}
        return JobFilter.parse({**given, **times}, strict=True), after
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error, InvalidRequest):
        raise InvalidRequest("cursor is not one this service gave", details={"field": "cursor"}) from None
