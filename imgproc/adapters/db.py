"""The database: tables for vendors and records, the engine, and its errors translated (``sqlerrors``)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from imgproc.adapters import schema
from imgproc.adapters.sqlerrors import sql_errors
from imgproc.config import Settings
from imgproc.jobtypes import JOB_TYPES

MYSQL = ("mysql", "mariadb")


def utcnow() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.TypeDecorator):
    """A timestamp stored as naive UTC (what both SQLite and MariaDB hold) and read back aware."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        # MariaDB's DATETIME drops fractions unless asked; keep microseconds so updates order.
        if dialect.name in MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=dt.UTC)


def _key(length: int) -> sa.types.TypeEngine:
    # MariaDB compares with a case-insensitive collation by default; record ids are case-sensitive.
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *MYSQL
    )


metadata = sa.MetaData()

# utf8mb4 keys: 4 bytes a character, so (64 + 191) * 4 stays under InnoDB's 3072-byte index limit.
_TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

vendors = sa.Table(
    "vendors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", _key(64), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("is_operator", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # Its plan's name (``plans``); NULL: the default plan, the environment's limits.
    sa.Column("plan", _key(64)),
    # A disabled vendor's keys are refused (403 vendor_disabled); its jobs and rows are kept.
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # Its own values over its plan's, as JSON in a plan's shape (``imgproc.adapters.plans``).
    sa.Column("overrides", sa.Text),
    **_TABLE_OPTIONS,
)

#: Named plans (``imgproc.adapters.plans``): a value left NULL is the default plan's (the environment's).
plans = sa.Table(
    "plans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", _key(64), nullable=False, unique=True),
    # Request limits, "N per period" as the ``limits`` library reads them (``plans.LIMITS``).
    *(sa.Column(f"limit_{name}", sa.String(64)) for name in ("all", "image", "bg_removal", "bulk")),
    # Fair-share weight, jobs running at once, items of a bulk (``plans.NUMBERS``).
    *(sa.Column(name, sa.Integer) for name in ("weight", "max_running", "max_items")),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    **_TABLE_OPTIONS,
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("vendor", _key(64), nullable=False),
    sa.Column("record_id", _key(191), nullable=False),
    sa.Column("original_url", sa.Text),
    # One result column per job type (imgproc.jobtypes): bg_removed_url, face_crop_url, processed_url.
    *(sa.Column(jt.column, sa.Text) for jt in JOB_TYPES.values()),
    sa.Column("processed", sa.Boolean, nullable=False, default=False),
    # Results written to the row: a job that ran twice shows here (audits "effects applied once").
    sa.Column("writes", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("vendor", "record_id", name="uq_records_vendor_record"),
    **_TABLE_OPTIONS,
)

#: A vendor's webhook signing secrets: the newest signs, the one before it too during a rotation's grace.
webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("vendor", _key(64), nullable=False, index=True),
    sa.Column("secret", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    **_TABLE_OPTIONS,
)

#: One row per webhook message (the same ``webhook-id`` on every attempt) and its delivery state.
webhook_messages = sa.Table(
    "webhook_messages",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("vendor", _key(64), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("job_id", sa.String(64)),
    sa.Column("batch_id", sa.String(64)),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("next_try_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Index("ix_webhook_messages_state", "state", "vendor"),
    **_TABLE_OPTIONS,
)

#: Every operator action, newest last (``imgproc.adapters.audit``): who, what, on what, when, from where.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("who", sa.String(191), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("details", sa.Text),
    sa.Column("source", sa.String(191)),
    sa.Index("ix_audit_log_at", "at"),
    **_TABLE_OPTIONS,
)

#: Every delivery attempt: when, the answer's status (or the error), how long it took, the next try.
webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(40), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("latency_ms", sa.Integer),
    sa.Column("next_try_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    **_TABLE_OPTIONS,
)


def _wal(dbapi_conn, wait: float = 30.0) -> None:
    """Put the database in WAL mode (it stays so); wait while another process holds its lock.

    Switching the mode needs the file to itself, and SQLite answers "database is locked" at
    once rather than through its busy timeout: seen when two workers started together on a
    fresh file, one migrating it while the other connected (that worker exited at start).
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            if dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        # WAL lets readers run beside the writer; SQLAlchemy emits BEGIN itself (below),
        # because the driver's own transaction handling breaks SAVEPOINT.
        dbapi_conn.isolation_level = None
        _wal(dbapi_conn)
        # WAL with NORMAL syncs at checkpoints, not at every commit: safe if a process
        # dies, only a power cut can take back the last commits.
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        # Take the write lock up front: a deferred transaction that reads and then writes
        # fails at once with "database is locked" when another worker wrote in between.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_engine(settings: Settings, *, check_schema: bool = True) -> sa.Engine:
    """Create the engine for ``settings.database_url``; SchemaMismatch when its schema is not this imgproc's.

    Tables come from the migrations (``imgproc db upgrade``, ``schema.py``), never from
    ``create_all``: processes starting at once raced to create the same tables.
    """
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
    else:
        # Pre-ping and recycle: MariaDB closes connections idle past wait_timeout.
        engine = sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600)
    if check_schema:
        with database_errors(engine, "schema check"):
            schema.require_current(engine)
    return engine


def database_errors(engine: sa.Engine, action: str) -> AbstractContextManager[None]:
    """SQLAlchemy's errors inside the block as ``database_failed``, transient or not (``sqlerrors``)."""
    return sql_errors(engine.url, f"database {action}")
