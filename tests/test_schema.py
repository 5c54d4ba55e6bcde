"""Schema migrations: ``imgproc db upgrade`` run at once by many processes, adopting 0.1.0's tables, refusals.

Every ``imgproc`` and ``worker.py`` here is a real subprocess, on SQLite and on
the real MariaDB (a fresh database per test, ``empty_mariadb_url``).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from imgproc.adapters import schema
from imgproc.adapters.db import make_engine, metadata, records, vendors, webhook_messages
from imgproc.adapters.records import Records
from imgproc.adapters.vendors import Vendors
from imgproc.config import ROOT
from imgproc.errors import SchemaMismatch
from tests.conftest import process_env

#: The revision this code needs (later revisions move it).
HEAD = schema.head()

LEGACY = Path(__file__).parent / "schema_0_1_0"
BEHIND = "database schema is at none ({why}), this imgproc needs {head}: run `imgproc db upgrade`"


@pytest.fixture(params=["sqlite", "mariadb"])
def empty_url(request, tmp_path):
    """An empty database: a SQLite file not yet made, or a fresh MariaDB database."""
    if request.param == "mariadb":
        return request.getfixturevalue("empty_mariadb_url")
    return f"sqlite:///{tmp_path / 'fresh.db'}"


def imgproc(settings, url: str, *argv: str) -> subprocess.Popen:
    """``python -m imgproc ARGV`` on database ``url``, started, not waited for."""
    return subprocess.Popen(
        [sys.executable, "-m", "imgproc", *argv],
        cwd=ROOT,
        env=process_env(settings.replace(database_url=url)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def raw_engine(url: str) -> sa.Engine:
    return make_engine(settings_for(url), check_schema=False)


def settings_for(url: str):
    from imgproc.config import Settings

    return Settings(database_url=url)


def test_four_concurrent_upgrades_of_an_empty_database_all_exit_0(settings, empty_url):
    procs = [imgproc(settings, empty_url, "db", "upgrade") for _ in range(4)]
    results = [finish(proc) for proc in procs]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    outputs = [out for _, out in results]
    # One of them made the tables; the others waited on the lock and found the schema at head.
    assert sum(f"upgraded from none to {HEAD}" in out for out in outputs) == 1, outputs
    assert sum(f"is at {HEAD} already" in out for out in outputs) == 3, outputs

    engine = raw_engine(empty_url)
    found = schema.state(engine)
    engine.dispose()
    assert found.at_head and found.tables == set(metadata.tables)
    # `imgproc db check`: at head, and the tables are exactly what db.py's metadata describes.
    code, out = finish(imgproc(settings, empty_url, "db", "check"))
    assert code == 0, out
    assert f"database schema is at {HEAD}, as this imgproc needs" in out


def _legacy_database(url: str, dialect: str) -> sa.Engine:
    """A database as imgproc 0.1.0 left it: create_all's tables (no alembic_version), a vendor and rows."""
    engine = raw_engine(url)
    statements = [s for s in (LEGACY / f"{dialect}.sql").read_text().split(";\n") if s.strip()]
    now = dt.datetime(2026, 11, 30, 12, 0, 0, 123456)
    with engine.begin() as conn:
        for statement in statements:
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
            conn.exec_driver_sql(body.rstrip(";"))
        conn.execute(
            vendors.insert(),
            [{"name": "acme", "key_hash": "ab" * 32, "is_operator": False, "created_at": now}],
        )
        conn.execute(
            records.insert(),
            [
                {
                    "vendor": "acme",
                    "record_id": f"rec-{i}",
                    "bg_removed_url": f"https://cdn/rec-{i}-bg.png",
                    "processed": True,
                    "writes": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(3)
            ],
        )
        conn.execute(
            webhook_messages.insert(),
            [
                {
                    "id": "msg_1",
                    "vendor": "acme",
                    "type": "job.finished",
                    "url": "https://hooks.example/x",
                    "body": "{}",
                    "state": "delivered",
                    "attempts": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
    return engine


def test_upgrade_adopts_the_tables_of_0_1_0_and_keeps_their_rows(settings, empty_url):
    dialect = "mariadb" if empty_url.startswith("mysql") else "sqlite"
    engine = _legacy_database(empty_url, dialect)
    # Before the upgrade, everything that opens the database refuses it (SQLite too: it has tables).
    with pytest.raises(SchemaMismatch) as info:
        make_engine(settings_for(empty_url))
    assert str(info.value) == BEHIND.format(why="tables made before migrations, by imgproc 0.1.0", head=HEAD)

    code, out = finish(imgproc(settings, empty_url, "db", "upgrade"))
    assert code == 0, out
    assert f"database schema upgraded from none to {HEAD}" in out

    checked = make_engine(settings_for(empty_url))  # no longer refused
    kept = Records(checked)
    assert kept.count() == 3
    assert kept.get("acme", "rec-2")["bg_removed_url"] == "https://cdn/rec-2-bg.png"
    assert [v.name for v in Vendors(checked).list()] == ["acme"]
    with checked.connect() as conn:
        assert conn.execute(sa.select(webhook_messages.c.state)).scalars().all() == ["delivered"]
        when = conn.execute(sa.select(records.c.created_at).limit(1)).scalar()
    assert when.microsecond == 123456  # the rows themselves, not copies
    checked.dispose()
    engine.dispose()
    code, out = finish(imgproc(settings, empty_url, "db", "check"))
    assert code == 0, out


def test_a_table_not_made_by_0_1_0_is_not_adopted(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = raw_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE records (id INTEGER PRIMARY KEY, vendor TEXT)")
    engine.dispose()
    code, out = finish(imgproc(settings, url, "db", "upgrade"))
    assert code == 1, out
    assert "error: table records exists without column(s) record_id, original_url" in out
    engine = raw_engine(url)
    assert schema.state(engine).current is None  # nothing stamped
    engine.dispose()


def test_worker_and_api_refuse_an_empty_mariadb_and_create_no_table(settings, redis_conn, empty_mariadb_url):
    env = process_env(settings.replace(database_url=empty_mariadb_url))
    message = BEHIND.format(why="no tables", head=HEAD)
    worker = subprocess.run(
        [sys.executable, "worker.py", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 2, worker.stderr
    assert f"worker cannot start: {message}" in worker.stderr

    api = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:0", "api:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert api.returncode != 0
    assert f"imgproc.errors.SchemaMismatch: {message}" in api.stderr

    engine = raw_engine(empty_mariadb_url)
    assert schema.state(engine).tables == set()  # nobody created tables on the side
    engine.dispose()


def test_a_fresh_sqlite_file_is_upgraded_at_start(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'imgproc.db'}"
    engine = make_engine(settings_for(url))
    assert schema.state(engine).at_head
    engine.dispose()


def test_a_database_upgraded_by_a_newer_imgproc_is_refused(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'imgproc.db'}"
    make_engine(settings_for(url)).dispose()
    engine = raw_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0042'")
    engine.dispose()
    with pytest.raises(SchemaMismatch, match="is at 0042, which this imgproc does not know"):
        make_engine(settings_for(url))
    code, out = finish(imgproc(settings, url, "db", "current"))
    assert code == 0 and "which this imgproc does not know" in out


def test_check_fails_when_the_tables_differ_from_the_code(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'imgproc.db'}"
    make_engine(settings_for(url)).dispose()
    engine = raw_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_webhook_messages_state")
    engine.dispose()
    code, out = finish(imgproc(settings, url, "db", "check"))
    assert code == 1
    assert "but its tables differ from this imgproc's" in out and "ix_webhook_messages_state" in out
