"""Results written into the vendors' own tables: checked against each table at start, one row per job.

A vendor's target (``writeback_config``) names a table of its database, the
key column matched against a job's ``record_id`` and the ``where`` columns
that keep it to its own rows. A job updates the one row that matches, in
statements of at most ``max_fields`` columns, every value bound, every column
name one reflected from the table. Database URLs are never in a message: the
password is hidden and scrubbed out of drivers' errors.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from imgproc.config import Settings
from imgproc.errors import PermanentError, WritebackInvalid
from imgproc.identifiers import shown

from . import writeback_config
from .sqlerrors import describe, translate
from .writeback_columns import bind, key_value, problems_of
from .writeback_config import Target

log = logging.getLogger("imgproc.writeback")

#: A job's write-back state once it is settled: a retry of the job does not write again.
FINAL = frozenset({"written", "not_found", "ambiguous"})


class ResultTargets(Protocol):
    """The vendors' own tables: what a job and its worker ask of the write-back."""

    def write(self, vendor: str, job_type: str, record_id: str, values: Mapping[str, Any]) -> dict | None:
        """Update the vendor's row with the result's ``values``; its state, None when none is configured."""
        ...

    def request_reload(self) -> None:
        """Read the targets again before the next write (a worker's SIGHUP: safe from a signal handler)."""
        ...

    def close(self) -> None:
        """Close the connections to the vendors' databases."""
        ...


@dataclass
class Report:
    """What the check found for one target: ``problems`` empty when it is ready."""

    target: Target
    problems: list[str]

    def lines(self) -> list[str]:
        head = (
            f"{self.target.vendor} ({self.target.origin}): {self.target.shown_url} table {self.target.table}"
        )
        if not self.problems:
            counts = ", ".join(
                f"{len(c)} column{'s' if len(c) > 1 else ''} for {t}" for t, c in self.target.columns.items()
            )
            return [f"{head}: ok ({counts})"]
        return [f"{head}:"] + [f"  {problem}" for problem in self.problems]


@dataclass
class _Prepared:
    """A target's reflected table and its statements, built once: a job only binds its values."""

    table: sa.Table
    #: Bound parameter -> where value.
    where: dict[str, Any]
    match: list
    select: sa.Select
    #: Job type -> its UPDATEs, each of at most max_fields columns (bound as v0, v1, ...), and their columns.
    updates: dict[str, list[tuple[sa.Update, list[str]]]]

    @classmethod
    def of(cls, target: Target, table: sa.Table) -> _Prepared:
        c = table.c
        where = {f"w{i}": value for i, value in enumerate(target.where.values())}
        match = [c[target.key] == sa.bindparam("key")]
        match += [c[name] == sa.bindparam(f"w{i}") for i, name in enumerate(target.where)]
        primary = {p.name for p in table.primary_key.columns}
        shown = [*table.primary_key.columns, *(c[n] for n in (target.key, *target.where) if n not in primary)]
        updates = {}
        for job_type, mapping in target.columns.items():
            names, size = list(mapping), target.max_fields
            chunks = [names[start : start + size] for start in range(0, len(names), size)]
            # The original system's cap: at most max_fields columns per UPDATE.
            updates[job_type] = [
                (
                    table.update()
                    .where(*match)
                    .values({n: sa.bindparam(f"v{names.index(n)}") for n in chunk}),
                    chunk,
                )
                for chunk in chunks
            ]
        select = sa.select(*shown).where(*match).with_for_update()
        return cls(table, where, match, select, updates)

    def update(self, engine: sa.Engine, target: Target, job_type: str, key: Any, row: dict) -> str:
        """Lock the rows matching key + where, update the one that matches exactly; the state."""
        wanted = {target.key: key, **target.where}
        params = {"key": key, **self.where}
        values = {f"v{i}": value for i, value in enumerate(row.values())}
        with engine.begin() as conn:
            # Locked, then compared exactly: MariaDB's collations match 'ACME' and 'acme ' to 'acme'.
            found = conn.execute(self.select, params).mappings().all()
            exact = [r for r in found if all(r[c] == v for c, v in wanted.items())]
            if not exact:
                return "not_found"
            if len(exact) > 1:
                return "ambiguous"
            if len(found) == 1:
                for statement, _columns in self.updates[job_type]:
                    conn.execute(statement, {**params, **values})
                return "written"
            # Told apart only by the collation: the row's own primary key picks it, unless it is made
            # of the very columns the collation merged.
            others = [p for p in self.table.primary_key.columns if p.name not in wanted]
            if not others:
                return "ambiguous"
            pick = [*self.match, *(p == exact[0][p.name] for p in others)]
            for _statement, columns in self.updates[job_type]:
                conn.execute(self.table.update().where(*pick).values({n: row[n] for n in columns}), params)
        return "written"


class Writeback:
    """The vendors' targets, an engine per database, each table reflected once (again on ``reload``)."""

    def __init__(self, targets: dict[str, Target], source: Path | None = None, environ=None, max_fields=10):
        self.targets = targets
        self._source, self._environ, self._max_fields = source, environ or {}, max_fields
        self._engines: dict[str, sa.Engine] = {}
        self._tables: dict[str, sa.Table] = {}
        self._prepared: dict[str, _Prepared] = {}
        self._reload = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> Writeback | None:
        """The targets of ``IMGPROC_WRITEBACK_FILE``, unchecked; None when it is not set."""
        if not settings.writeback_file:
            return None
        path = Path(settings.writeback_file)
        targets = writeback_config.load(path, settings.environ, settings.db_max_fields)
        return cls(targets, path, settings.environ, settings.db_max_fields)

    def engine(self, target: Target) -> sa.Engine:
        engine = self._engines.get(target.database_url)
        if engine is None:
            url = sa.make_url(target.database_url)
            # Bounded waits: a database that stops answering is a transient failure, not a hung job.
            args = {"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30}
            options = {"connect_args": args} if url.get_backend_name() in ("mysql", "mariadb") else {}
            # Every use ends its own transaction (begin() commits, connect() rolls back on close): the
            # pool's ROLLBACK on return would be one more round trip per job, for nothing.
            engine = sa.create_engine(
                url, pool_pre_ping=True, pool_recycle=3600, pool_reset_on_return=None, **options
            )
            self._engines[target.database_url] = engine
        return engine

    def check(self) -> list[Report]:
        """Connect to every target and reflect its table; a report per target."""
        reports = []
        for target in self.targets.values():
            try:
                problems = problems_of(target, self._reflect(target, setup=True))
            except WritebackInvalid as exc:
                problems = [exc.message]
            reports.append(Report(target, problems))
        return reports

    def require(self) -> Writeback:
        """Raise ``WritebackInvalid`` (every problem of every target) unless all targets are ready."""
        failed = [line for report in self.check() if report.problems for line in report.lines()]
        if failed:
            raise WritebackInvalid("write-back targets do not match their tables:\n" + "\n".join(failed))
        return self

    def request_reload(self) -> None:
        """Read the file again before the next write-back (safe from a signal handler)."""
        self._reload.set()

    def reload(self) -> bool:
        """Read and check the file again; a broken one is logged and the targets in use stay."""
        self._reload.clear()
        if self._source is None:
            return False
        try:
            fresh = Writeback(
                writeback_config.load(self._source, self._environ, self._max_fields),
                self._source,
                self._environ,
                self._max_fields,
            ).require()
        except WritebackInvalid as exc:
            log.error("write-back file not reloaded, the previous one stays: %s", exc.message)
            return False
        self.close()
        self.targets, self._engines, self._tables = fresh.targets, fresh._engines, fresh._tables
        self._prepared = {}
        log.info("write-back file %s reloaded: %d vendors", self._source, len(self.targets))
        return True

    def write(self, vendor: str, job_type: str, record_id: str, values: Mapping[str, Any]) -> dict | None:
        """Update the vendor's one row matching ``record_id``; ``{"state": ...}``, None without a target."""
        if self._reload.is_set():
            self.reload()
        target = self.targets.get(vendor)
        mapping = target.columns.get(job_type) if target else None
        if not mapping:
            return None
        prepared = self._prepared.get(target.vendor)
        if prepared is None:  # first job since start or reload, or since the table was found wrong
            table = self._reflect(target)
            problems = problems_of(target, table, located=False)
            if problems:
                self._tables.pop(target.vendor, None)  # read it again next time: it may be fixed
                raise PermanentError(
                    f"write-back into {vendor}'s table {target.table}: {'; '.join(problems)}",
                    code="database_failed",
                )
            prepared = self._prepared[target.vendor] = _Prepared.of(target, table)
        key = key_value(record_id, prepared.table.c[target.key])
        if key is None:
            return {"state": "not_found"}
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        row = {
            name: bind(value.render({**values, "now": now}), prepared.table.c[name])
            for name, value in mapping.items()
        }
        try:
            with self._errors(target, "write"):
                state = prepared.update(self.engine(target), target, job_type, key, row)
        except PermanentError:  # a dropped column, say: the next job reflects the table again
            self._tables.pop(target.vendor, None)
            self._prepared.pop(target.vendor, None)
            raise
        if state != "written":
            log.info("write-back of %s/%s into %s: %s", vendor, shown(record_id), target.table, state)
        return {"state": state}

    def _reflect(self, target: Target, setup: bool = False) -> sa.Table:
        table = None if setup else self._tables.get(target.vendor)
        if table is None:
            with self._errors(target, "check", setup=setup):
                table = sa.Table(target.table, sa.MetaData(), autoload_with=self.engine(target))
            self._tables[target.vendor] = table
            self._prepared.pop(target.vendor, None)
        return table

    @contextmanager
    def _errors(self, target: Target, action: str, setup: bool = False) -> Iterator[None]:
        """Database errors as ``database_failed`` (transient or not), or ``WritebackInvalid`` at a check."""
        try:
            yield
        except sa.exc.NoSuchTableError:
            message = f"the database has no table {target.table}"
            if setup:
                raise WritebackInvalid(message) from None
            raise PermanentError(
                f"write-back into {target.vendor}'s {message}", code="database_failed"
            ) from None
        except sa.exc.SQLAlchemyError as exc:
            if setup:
                raise WritebackInvalid(
                    f"cannot reflect {target.table}: {describe(exc, target.database_url)}"
                ) from None
            what = f"write-back {action} into {target.vendor}'s table {target.table}"
            raise translate(exc, target.database_url, what) from None

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
