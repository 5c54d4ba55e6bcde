"""Write-back of job results to the records table."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Protocol

import sqlalchemy as sa

from imgproc.jobtypes import JOB_TYPES

from .db import database_errors, records, utcnow

#: The column each operation (job type) writes its result URL to.
OPERATION_COLUMNS = {jt.name: jt.column for jt in JOB_TYPES.values()}


class ResultWriter(Protocol):
    """Where a job's result URL is written back: what a job asks of the database."""

    def save_result(
        self, vendor: str, record_id: str, operation: str, url: str, original_url: str | None = None
    ) -> None:
        """Store ``url`` as the result of ``operation`` on the vendor's record, creating it when missing."""
        ...


#: Columns that update_fields may set; the key and the timestamps are managed here.
FIELDS = frozenset(records.c.keys()) - {"id", "vendor", "record_id", "writes", "created_at", "updated_at"}

#: Rows per transaction in save_results.
BATCH_SIZE = 100


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _result_fields(operation: str, url: str, original_url: str | None = None) -> dict:
    try:
        column = OPERATION_COLUMNS[operation]
    except KeyError:
        raise ValueError(f"unknown operation {operation!r}") from None
    fields = {column: url, "processed": True}
    if original_url is not None:
        fields["original_url"] = original_url
    return fields


class Records:
    """The records table: one row per (vendor, record_id), one result column per operation."""

    def __init__(self, engine: sa.Engine, max_fields: int = 10):
        if max_fields < 1:
            raise ValueError("max_fields must be at least 1")
        self._engine = engine
        self.max_fields = max_fields

    def save_result(
        self, vendor: str, record_id: str, operation: str, url: str, original_url: str | None = None
    ) -> None:
        """Store ``url`` as the result of ``operation``, creating the record when missing."""
        self.update_fields(vendor, record_id, _result_fields(operation, url, original_url), count_write=True)

    def save_results(self, rows: Iterable[dict]) -> None:
        """Store many results (dicts of save_result's arguments), one transaction per 100 rows."""
        # Check every row first, so a bad one does not leave the earlier batches written.
        items = [
            (
                row["vendor"],
                row["record_id"],
                _result_fields(row["operation"], row["url"], row.get("original_url")),
            )
            for row in rows
        ]
        with database_errors(self._engine, "save results"):
            for batch in _chunks(items, BATCH_SIZE):
                with self._engine.begin() as conn:
                    for vendor, record_id, fields in batch:
                        self._upsert(conn, vendor, record_id, fields, count_write=True)

    def update_fields(self, vendor: str, record_id: str, fields: dict, count_write: bool = False) -> None:
        """Set ``fields`` in one transaction, at most ``max_fields`` columns per UPDATE.

        ``count_write`` adds one to the row's ``writes`` (a result was written).
        """
        unknown = set(fields) - FIELDS
        if unknown:
            raise ValueError(f"unknown record fields: {', '.join(sorted(unknown))}")
        with database_errors(self._engine, "update record"), self._engine.begin() as conn:
            self._upsert(conn, vendor, record_id, fields, count_write)

    def get(self, vendor: str, record_id: str) -> dict | None:
        """Return the record as a dict of its columns, or None."""
        query = sa.select(records).where(records.c.vendor == vendor, records.c.record_id == record_id)
        with database_errors(self._engine, "read record"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else dict(row._mapping)

    def count(self, vendor: str | None = None) -> int:
        """Return the number of records, of one vendor or of all."""
        query = sa.select(sa.func.count()).select_from(records)
        if vendor is not None:
            query = query.where(records.c.vendor == vendor)
        with database_errors(self._engine, "count records"), self._engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def _upsert(
        self, conn: sa.Connection, vendor: str, record_id: str, fields: dict, count_write: bool = False
    ) -> None:
        now = utcnow()
        chunks = list(_chunks(list(fields.items()), self.max_fields)) or [[]]
        first = dict(chunks[0])
        # One statement inserts the row or updates it, atomically: two workers writing
        # the same new record cannot both insert it.
        statement = _upsert_statement(conn.dialect.name, tuple(sorted(first)), count_write)
        conn.execute(
            statement,
            {
                "vendor": vendor,
                "record_id": record_id,
                "now": now,
                **{f"v_{name}": value for name, value in first.items()},
            },
        )
        # The original system capped columns per UPDATE to stay far below max_allowed_packet.
        key = sa.and_(records.c.vendor == vendor, records.c.record_id == record_id)
        for chunk in chunks[1:]:
            conn.execute(records.update().where(key).values({**dict(chunk), "updated_at": now}))


@functools.lru_cache(maxsize=64)
def _upsert_statement(dialect: str, names: tuple[str, ...], count_write: bool):
    """INSERT ... ON CONFLICT DO UPDATE (SQLite, PostgreSQL) or ON DUPLICATE KEY UPDATE (MySQL, MariaDB).

    Built once per dialect and set of columns, with bound parameters: building
    the statement anew for every write was a third of a light job's database
    time (measured with cProfile).
    """
    now = sa.bindparam("now")
    values = {name: sa.bindparam(f"v_{name}") for name in names}
    row = {
        "vendor": sa.bindparam("vendor"),
        "record_id": sa.bindparam("record_id"),
        "created_at": now,
        "updated_at": now,
        **values,
        "writes": 1 if count_write else 0,
    }
    values["updated_at"] = now
    if count_write:
        values["writes"] = records.c.writes + 1
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert

        return insert(records).values(row).on_duplicate_key_update(values)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise ValueError(f"records need SQLite, MySQL/MariaDB or PostgreSQL, not {dialect}")
    return (
        insert(records).values(row).on_conflict_do_update(index_elements=["vendor", "record_id"], set_=values)
    )
