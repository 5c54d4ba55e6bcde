"""Results written into a vendor platform's own MariaDB table (IMGPROC_WRITEBACK_FILE), by light jobs."""

from __future__ import annotations

import json
import logging
import urllib.parse
import uuid
from dataclasses import dataclass

import pytest
import redis
import sqlalchemy as sa
from rq.job import Job

from imgproc.adapters import writeback_config
from imgproc.adapters.writeback import Writeback
from imgproc.errors import WritebackInvalid

LIGHT = "/api/image-queue/process-image-queue"
PASSWORD = "Wb-s3cret!pw@x"

#: The platform's table: rows of two tenants under the same ids, and a trigger counting UPDATEs per row.
TABLE = """
CREATE TABLE data_records (
    pk INT AUTO_INCREMENT PRIMARY KEY,
    id INT NOT NULL,
    tenant_id VARCHAR(32) NOT NULL,
    photo_url VARCHAR(255),
    processed BOOLEAN NOT NULL DEFAULT FALSE,
    processed_at DATETIME,
    width INT, height INT, fmt VARCHAR(8), size_bytes INT, job CHAR(36), note VARCHAR(100),
    c1 INT, c2 DOUBLE, c3 VARCHAR(10),
    updates INT NOT NULL DEFAULT 0
)"""
TRIGGER = (
    "CREATE TRIGGER count_updates BEFORE UPDATE ON data_records "
    "FOR EACH ROW SET NEW.updates = OLD.updates + 1"
)
ROWS = [(7, "acme"), (7, "globex"), (8, "acme"), (9, "acme"), (9, "acme")]

HEAD = """\
[vendors.acme]
database_url = "env:ACME_DB_URL"
table = "data_records"
key = "id"
where = {{ tenant_id = "acme" }}
max_fields = {max_fields}

[vendors.acme.columns.process-image]
"""
THREE = """\
photo_url = "{url}"
processed = true
processed_at = "{now}"
"""
TWELVE = (
    THREE
    + """\
width = "{width}"
height = "{height}"
fmt = "{format}"
size_bytes = "{bytes}"
job = "{job_id}"
note = "imgproc made it {width}x{height}"
c1 = 1
c2 = 2.5
c3 = "three"
"""
)


@dataclass
class Platform:
    url: str  # as the vendor's user, with its password
    root: sa.Engine

    def rows(self, record_id: int) -> list[dict]:
        with self.root.connect() as conn:
            query = sa.text("SELECT * FROM data_records WHERE id = :id ORDER BY pk")
            return [dict(r) for r in conn.execute(query, {"id": record_id}).mappings()]

    def sql(self, statement: str) -> None:
        with self.root.begin() as conn:
            conn.exec_driver_sql(statement)


@pytest.fixture
def platform(empty_mariadb_url):
    """The vendor platform's database, reached as a user with a password and only SELECT, UPDATE."""
    root = sa.create_engine(empty_mariadb_url)
    database = sa.make_url(empty_mariadb_url).database
    user = f"wb_{uuid.uuid4().hex[:8]}"
    with root.begin() as conn:
        conn.exec_driver_sql(TABLE)
        conn.exec_driver_sql(TRIGGER)
        conn.execute(
            sa.text("INSERT INTO data_records (id, tenant_id) VALUES (:id, :tenant)"),
            [{"id": i, "tenant": t} for i, t in ROWS],
        )
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{PASSWORD}'")
        conn.exec_driver_sql(f"GRANT SELECT, UPDATE ON {database}.* TO '{user}'@'%%'")
    server = sa.make_url(empty_mariadb_url)
    secret = urllib.parse.quote_plus(PASSWORD)
    url = f"mysql+pymysql://{user}:{secret}@{server.host}:{server.port or 3306}/{database}"
    yield Platform(url, root)
    with root.begin() as conn:
        conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
    root.dispose()


@pytest.fixture
def runtime(settings, redis_conn):
    """conftest's worker runtime without the models: light jobs need none (loading them took 50 s here)."""
    from tests.conftest import worker_runtime

    with worker_runtime(settings, redis_conn) as rt:
        yield rt


@pytest.fixture
def acme(vendor_key):
    return vendor_key("acme")


@pytest.fixture
def target(tmp_path, platform, runtime):
    """``target(mapping, max_fields)``: the file written, the runtime's write-back loaded and checked."""

    def make(mapping: str = THREE, max_fields: int = 10, check: bool = True) -> Writeback:
        path = tmp_path / "writeback.toml"
        path.write_text(HEAD.format(max_fields=max_fields) + mapping)
        settings = runtime.settings.replace(writeback_file=str(path), environ={"ACME_DB_URL": platform.url})
        writeback = Writeback.from_settings(settings)
        runtime.writeback = writeback.require() if check else writeback
        return writeback

    yield make
    if isinstance(runtime.writeback, Writeback):
        runtime.writeback.close()


def statements(writeback: Writeback) -> list[tuple[str, object]]:
    """Every statement the target's engine sends from now on, with its parameters."""
    sent: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        sent.append((" ".join(statement.split()), parameters))

    sa.event.listen(writeback.engine(writeback.targets["acme"]), "before_cursor_execute", capture)
    return sent


def run_job(client, headers, photo_server, photos, work, record_id: str) -> dict:
    photo_server.serve("/coffee.jpg", photos["coffee"])
    body = {
        "record_id": record_id,
        "image_url": photo_server.url("/coffee.jpg"),
        "options": {"resize": [64, 64]},
    }
    response = client.post(LIGHT, json=body, headers=headers)
    assert response.status_code == 202, response.json
    work()
    return client.get(f"/api/image-queue/job/{response.json['job_id']}", headers=headers).json


def test_acme_job_updates_only_its_row_in_statements_of_ten(
    client, acme, photo_server, photos, work, platform, target
):
    writeback = target(TWELVE, max_fields=10)
    sent = statements(writeback)
    job = run_job(client, acme, photo_server, photos, work, "7")
    assert job["state"] == "finished" and job["writeback"] == {"state": "written"}, job
    result = job["result"]
    # Without IMGPROC_PUBLIC_URL a worker writes the URL relative to the API (the poll's is absolute).
    url = urllib.parse.urlsplit(result["url"]).path
    ours, theirs = platform.rows(7)
    assert ours["tenant_id"] == "acme" and ours["photo_url"] == url
    assert (ours["width"], ours["height"], ours["fmt"], ours["size_bytes"]) == (
        result["width"],
        result["height"],
        "jpg",
        result["bytes"],
    )
    assert ours["processed"] == 1 and ours["processed_at"] is not None and ours["job"] == job["job_id"]
    assert ours["note"] == f"imgproc made it {result['width']}x{result['height']}"
    assert (ours["c1"], ours["c2"], ours["c3"]) == (1, 2.5, "three")
    assert theirs["tenant_id"] == "globex" and theirs["photo_url"] is None and theirs["updates"] == 0
    assert all(r["updates"] == 0 for r in platform.rows(8) + platform.rows(9))
    updates = [(s, p) for s, p in sent if s.startswith("UPDATE")]
    assert len(updates) == 2 and ours["updates"] == 2  # 12 columns: 10 + 2
    for statement, parameters in updates:
        columns = statement.split(" SET ", 1)[1].split(" WHERE ", 1)[0].count("=")
        assert columns <= 10
        assert statement.endswith("WHERE data_records.id = %(key)s AND data_records.tenant_id = %(w0)s")
        assert url not in statement  # values bound, never spliced in
        assert parameters["w0"] == "acme" and parameters["key"] == 7
    assert url in updates[0][1].values()
    assert sum(s.split(" SET ", 1)[1].split(" WHERE ")[0].count("=") for s, _ in updates) == 12
    assert sent[0][0].startswith("SELECT") and sent[0][0].endswith("FOR UPDATE")


def test_a_row_the_collation_alone_matches_is_not_touched(
    client, acme, photo_server, photos, work, platform, target
):
    platform.sql("INSERT INTO data_records (id, tenant_id) VALUES (8, 'ACME ')")  # = 'acme' in MariaDB's eyes
    target()
    job = run_job(client, acme, photo_server, photos, work, "8")
    assert job["writeback"] == {"state": "written"}, job
    assert [(r["tenant_id"], r["updates"]) for r in platform.rows(8)] == [("acme", 1), ("ACME ", 0)]


def test_no_row_is_not_found_and_nothing_is_inserted(
    client, acme, photo_server, photos, work, platform, target
):
    target()
    for record_id in ("404", "7abc"):  # MariaDB would compare '7abc' to 7: the id is refused first
        job = run_job(client, acme, photo_server, photos, work, record_id)
        assert job["state"] == "finished" and job["writeback"] == {"state": "not_found"}, job
    with platform.root.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*), SUM(updates) FROM data_records").one() == (5, 0)


def test_two_rows_are_ambiguous_and_nothing_is_written(
    client, acme, photo_server, photos, work, platform, target
):
    target()
    job = run_job(client, acme, photo_server, photos, work, "9")
    assert job["state"] == "finished" and job["writeback"] == {"state": "ambiguous"}, job
    assert [(r["photo_url"], r["updates"]) for r in platform.rows(9)] == [(None, 0), (None, 0)]


def test_a_dropped_column_is_refused_at_start_and_fails_a_running_job(
    client, acme, photo_server, photos, work, platform, target, tmp_path, monkeypatch, capsys, caplog
):
    from imgproc.tools.cli import main as cli
    from imgproc.worker.main import main as worker

    writeback = target()  # checked: ready
    platform.sql("ALTER TABLE data_records DROP COLUMN processed_at")
    job = run_job(client, acme, photo_server, photos, work, "7")
    assert job["state"] == "failed" and job["attempts"] == 1, job
    assert job["error"]["code"] == "database_failed" and not job["error"]["retryable"]
    assert "processed_at" in job["error"]["message"] and job["writeback"] == {"state": "failed"}
    job = run_job(client, acme, photo_server, photos, work, "8")  # the table is reflected again
    assert job["error"]["code"] == "database_failed" and not job["error"]["retryable"], job
    message = job["error"]["message"]
    assert "columns.process-image.processed_at: the table has no column" in message
    assert "writeback.toml" not in message  # the server's paths are not the vendor's business
    writeback.close()
    # At start: `imgproc writeback check` and the worker name the column and the line of the file.
    monkeypatch.setenv("IMGPROC_WRITEBACK_FILE", str(tmp_path / "writeback.toml"))
    monkeypatch.setenv("ACME_DB_URL", platform.url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # the check comes first
    assert cli(["writeback", "check"]) == 1
    out = capsys.readouterr().out
    assert "writeback.toml:11: columns.process-image.processed_at: the table has no column" in out
    assert PASSWORD not in out and urllib.parse.quote_plus(PASSWORD) not in out
    with caplog.at_level(logging.ERROR, logger="imgproc.worker"):
        assert worker(["--burst", "--queues", "image-processing"]) == 2
    assert "worker cannot start" in caplog.text and "no column processed_at" in caplog.text


def test_mariadb_cut_during_the_write_back_is_retried_and_written_once(
    client, acme, photo_server, photos, work, platform, target, runtime, redis_conn
):
    writeback = target()
    cuts = []

    def cut_first_update(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE") and not cuts:  # the server drops the connection mid-transaction
            cuts.append(conn.connection.dbapi_connection.thread_id())
            platform.sql(f"KILL {cuts[0]}")

    sa.event.listen(writeback.engine(writeback.targets["acme"]), "before_cursor_execute", cut_first_update)
    job = run_job(client, acme, photo_server, photos, work, "7")
    assert cuts and job["state"] == "finished" and job["attempts"] == 2, job
    assert job["writeback"] == {"state": "written"}
    # Between the attempts its events said: scheduled for a retry, database_failed, write-back pending.
    events = [json.loads(f[b"data"]) for _id, f in redis_conn.xrange(f"imgproc:events:job:{job['job_id']}")]
    waiting = [e for e in events if e["state"] == "scheduled"]
    assert waiting and waiting[0]["writeback"] == {"state": "pending"}
    assert waiting[0]["error"]["code"] == "database_failed" and waiting[0]["error"]["retryable"]
    ours, theirs = platform.rows(7)
    # Written once; relative to the API (no IMGPROC_PUBLIC_URL set), the poll answer its absolute form.
    assert job["result"]["url"].endswith(ours["photo_url"]) and ours["updates"] == 1
    assert theirs["updates"] == 0
    assert photo_server.hits["/coffee.jpg"] == 1  # fetched and uploaded once: the retry reused them
    assert runtime.records.get("acme", "7")["writes"] == 1  # imgproc's own record, once


def test_a_retry_after_the_write_back_does_not_write_again(
    client, acme, photo_server, photos, work, platform, target, monkeypatch
):
    from imgproc.worker import tasks

    target()
    reach, failed = tasks.Stages.reach, []

    def flaky(self, stage, force=False, **extra):
        if stage == "done" and not failed:  # Redis hiccups after the write-back: the job is retried
            failed.append(stage)
            raise redis.ConnectionError("Redis went away")
        return reach(self, stage, force, **extra)

    monkeypatch.setattr(tasks.Stages, "reach", flaky)
    job = run_job(client, acme, photo_server, photos, work, "8")
    assert failed and job["state"] == "finished" and job["attempts"] == 2, job
    assert platform.rows(8)[0]["updates"] == 1 and job["writeback"] == {"state": "written"}


def test_the_password_is_never_in_an_answer_or_a_log(
    client, acme, photo_server, photos, work, platform, target, redis_conn, caplog
):
    caplog.set_level(logging.DEBUG)
    writeback = target()
    user = sa.make_url(platform.url).username
    platform.sql(f"ALTER USER '{user}'@'%%' IDENTIFIED BY 'another-one'")  # its credentials go bad
    writeback.close()  # new connections from here on
    job = run_job(client, acme, photo_server, photos, work, "7")
    assert job["state"] == "failed" and job["error"]["code"] == "database_failed", job
    assert not job["error"]["retryable"] and job["attempts"] == 1  # bad credentials: not retried
    assert "Access denied" in job["error"]["message"]
    stored = json.dumps(Job.fetch(job["job_id"], connection=redis_conn).meta)
    with pytest.raises(WritebackInvalid) as refused:  # the start-up check
        writeback.require()
    for text in (json.dumps(job), stored, caplog.text, refused.value.message):
        assert PASSWORD not in text and urllib.parse.quote_plus(PASSWORD) not in text
    assert ":***@" in refused.value.message


def test_reload_reads_the_file_again_and_keeps_the_old_one_when_broken(
    client, acme, photo_server, photos, work, platform, target, tmp_path, caplog
):
    writeback = target()
    path = tmp_path / "writeback.toml"
    path.write_text(HEAD.format(max_fields=10) + THREE + 'note = "again"\n')
    writeback.request_reload()  # what a worker's SIGHUP does
    run_job(client, acme, photo_server, photos, work, "7")
    assert platform.rows(7)[0]["note"] == "again"
    path.write_text(HEAD.format(max_fields=10) + THREE + 'nope = "x"\n')
    writeback.request_reload()
    job = run_job(client, acme, photo_server, photos, work, "8")
    assert job["writeback"] == {"state": "written"} and platform.rows(8)[0]["note"] == "again"
    assert "not reloaded" in caplog.text and "no column nope" in caplog.text


@pytest.mark.parametrize(
    "text, line, says",
    [
        ('[vendors.acme]\ntable = "t"\nkey = "id"\n', 1, "vendors.acme.database_url: is required"),
        (HEAD.format(max_fields=0) + THREE, 6, "vendors.acme.max_fields: must be a whole number"),
        (HEAD.format(max_fields=5) + 'x = "{width"\n', 9, "vendors.acme.columns.process-image.x:"),
        (HEAD.format(max_fields=5) + 'x = "{colour}"\n', 9, "unknown placeholder {colour}"),
        (HEAD.format(max_fields=5) + 'x = "{model}"\n', 9, "process-image results name no model"),
        (HEAD.format(max_fields=5) + 'tenant_id = "globex"\n', 9, "is the key or a where column"),
        (HEAD.format(max_fields=5).replace("process-image", "resize") + THREE, 8, "unknown job type"),
        (HEAD.format(max_fields=5) + THREE + "colour = 1\n[vendors.acme.oops]\n", 13, "oops: unknown key"),
        (HEAD.format(max_fields=5) + "photo_url = \n", 9, "not valid TOML: Invalid value (at line 9"),
    ],
)
def test_mistakes_in_the_file_name_their_line(tmp_path, text, line, says):
    path = tmp_path / "writeback.toml"
    path.write_text(text)
    with pytest.raises(WritebackInvalid) as error:
        writeback_config.load(path, {"ACME_DB_URL": "mysql+pymysql://u:pw@h/db"})
    assert f"{path}:{line}" in error.value.message and says in error.value.message, error.value.message


def test_a_missing_environment_variable_is_named_and_a_bad_url_not_repeated(tmp_path):
    path = tmp_path / "writeback.toml"
    path.write_text(HEAD.format(max_fields=5) + THREE)
    with pytest.raises(WritebackInvalid, match=r"writeback.toml:2: .*ACME_DB_URL is not set"):
        writeback_config.load(path, {})
    with pytest.raises(WritebackInvalid) as error:
        writeback_config.load(path, {"ACME_DB_URL": "not a url with s3cret"})
    assert "s3cret" not in error.value.message and "is not a SQLAlchemy database URL" in error.value.message


def test_the_check_names_values_that_do_not_fit(platform, target):
    writeback = target(THREE + 'width = "{url}"\nfmt = "far too long"\njob = "{job_id}"\n', check=False)
    (report,) = writeback.check()
    lines = "\n".join(report.lines())
    assert "writeback.toml:12: columns.process-image.width: {url} (str) does not fit INTEGER" in lines
    assert "writeback.toml:13: columns.process-image.fmt: 'far too long' is longer than VARCHAR(8)" in lines
    assert len(report.problems) == 2, lines  # CHAR(36) holds a job id
    with pytest.raises(WritebackInvalid, match="does not fit INTEGER"):
        writeback.require()


SQLITE_TABLE = """
CREATE TABLE data_records (
    pk INTEGER PRIMARY KEY,
    id BIGINT NOT NULL,
    tenant_id VARCHAR(32) NOT NULL,
    photo_url VARCHAR(255),
    processed BOOLEAN NOT NULL DEFAULT 0,
    processed_at DATETIME
)"""


@pytest.fixture(params=["sqlite", "mariadb"])
def int_keys(request, tmp_path, runtime):
    """A write-back into INT keys 0, 7 and 42 (SQLite's BIGINT, MariaDB's INT): (writeback, urls)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'platform.db'}"
        root = sa.create_engine(url)
        with root.begin() as conn:
            conn.exec_driver_sql(SQLITE_TABLE)
            conn.exec_driver_sql("INSERT INTO data_records (id, tenant_id) VALUES (7, 'acme')")
    else:
        platform = request.getfixturevalue("platform")
        url, root = platform.url, platform.root
    with root.begin() as conn:
        conn.exec_driver_sql("INSERT INTO data_records (id, tenant_id) VALUES (0, 'acme'), (42, 'acme')")
    path = tmp_path / "writeback.toml"
    path.write_text(HEAD.format(max_fields=10) + THREE)
    settings = runtime.settings.replace(writeback_file=str(path), environ={"ACME_DB_URL": url})
    runtime.writeback = writeback = Writeback.from_settings(settings).require()

    def urls(record_id: int) -> list:
        with root.connect() as conn:
            query = sa.text("SELECT photo_url FROM data_records WHERE id = :id AND tenant_id = 'acme'")
            return [row[0] for row in conn.execute(query, {"id": record_id})]

    yield writeback, urls
    writeback.close()
    if request.param == "sqlite":
        root.dispose()


def test_an_int_key_matches_only_its_canonical_form(int_keys, client, acme, photo_server, photos, work):
    """Issue 22 finding 13: '042' and '-0' were written to rows 42 and 0; 2**63 failed the job 'internal'."""
    from imgproc.errors import PermanentError

    writeback, urls = int_keys
    values = {"url": "/media/x.jpg", "width": 1, "height": 1, "format": "jpg", "bytes": 1, "job_id": "j"}
    for record_id in ("042", "-0", "+42", " 42", "42 ", "4_2", "42.0", "0x2a", "٤٢"):
        answer = writeback.write("acme", "process-image", record_id, values)
        assert answer == {"state": "not_found"}, record_id
    assert urls(42) == [None] and urls(0) == [None]
    assert writeback.write("acme", "process-image", "42", values) == {"state": "written"}
    assert writeback.write("acme", "process-image", "0", values) == {"state": "written"}
    assert urls(42) == ["/media/x.jpg"] and urls(0) == ["/media/x.jpg"]
    for record_id in ("9223372036854775808", "-9223372036854775809", "99999999999999999999"):
        with pytest.raises(PermanentError) as error:
            writeback.write("acme", "process-image", record_id, values)
        assert error.value.code == "database_failed" and "out of the range" in error.value.message
    assert writeback.write("acme", "process-image", "9223372036854775807", values) == {"state": "not_found"}
    job = run_job(client, acme, photo_server, photos, work, "9223372036854775808")  # as a vendor meets it
    assert job["state"] == "failed" and job["error"]["code"] == "database_failed", job
    assert not job["error"]["retryable"] and job["writeback"] == {"state": "failed"}


def test_a_text_key_is_logged_escaped(platform, tmp_path, runtime, caplog):
    """Issue 22 finding 10: a record id stored with a newline forged a line of the worker's log."""
    path = tmp_path / "writeback.toml"
    path.write_text(HEAD.replace('key = "id"', 'key = "fmt"').format(max_fields=10) + THREE)
    settings = runtime.settings.replace(writeback_file=str(path), environ={"ACME_DB_URL": platform.url})
    writeback = Writeback.from_settings(settings).require()
    with caplog.at_level(logging.INFO, logger="imgproc.writeback"):
        state = writeback.write("acme", "process-image", "7\n12:00:00 forged", {"url": "/media/x.jpg"})
    writeback.close()
    assert state == {"state": "not_found"}
    assert "acme/7\\n12:00:00 forged into data_records: not_found" in caplog.text, caplog.text
    assert "\n12:00" not in caplog.text


def test_a_key_of_no_canonical_form_is_refused_at_the_check(platform, tmp_path, runtime):
    """A DOUBLE key would match '7.0' or '7e0' to row 7: only integer and text keys are accepted."""
    path = tmp_path / "writeback.toml"
    path.write_text(HEAD.replace('key = "id"', 'key = "c2"').format(max_fields=10) + THREE)
    settings = runtime.settings.replace(writeback_file=str(path), environ={"ACME_DB_URL": platform.url})
    writeback = Writeback.from_settings(settings)
    (report,) = writeback.check()
    assert "writeback.toml:4: key: c2 is DOUBLE; only an integer or text key" in "\n".join(report.lines())
    writeback.close()
