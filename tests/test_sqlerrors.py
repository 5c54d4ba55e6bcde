"""SQLAlchemy's errors translated once (imgproc.adapters.sqlerrors), on a real MariaDB and SQLite files."""

from __future__ import annotations

import threading
import urllib.parse
import uuid

import pytest
import sqlalchemy as sa

from imgproc.adapters.sqlerrors import scrub, secrets_of, sql_errors
from imgproc.errors import PermanentError, TransientError

#: A password with what URLs and messages encode: @ : / % + space, quotes, a backslash, # and ?.
PASSWORD = "p@ss:w/rd%2B+ 'q\"\\!#?"


def encodings(password: str) -> set[str]:
    """The forms a password takes in URLs: plain, percent-encoded three ways, as SQLAlchemy writes it."""
    return {
        password,
        urllib.parse.quote(password, safe=""),
        urllib.parse.quote(password),
        urllib.parse.quote_plus(password),
        sa.URL.create("mysql", "u", password, "h").render_as_string(hide_password=False)[10:-2],
    }


def shown(text: str) -> set[str]:
    """``text`` and how a repr of a message holding it shows it (pymysql's str(error) is its args' repr)."""
    escaped = text.replace("\\", "\\\\")
    return {text, repr(text)[1:-1], escaped, escaped.replace("'", "\\'"), escaped.replace('"', '\\"')}


@pytest.fixture
def mariadb(empty_mariadb_url):
    """``(url, root)``: a fresh database reached as a user whose password is PASSWORD, and as root."""
    root = sa.create_engine(empty_mariadb_url)
    server, user = sa.make_url(empty_mariadb_url), f"se_{uuid.uuid4().hex[:8]}"
    with root.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(64))")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 'one')")
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY :pw"), {"pw": PASSWORD})
        conn.exec_driver_sql(f"GRANT ALL ON {server.database}.* TO '{user}'@'%%'")
    url = sa.URL.create(
        "mysql+pymysql", user, PASSWORD, server.host, server.port or 3306, server.database
    ).render_as_string(hide_password=False)
    yield url, root
    with root.begin() as conn:
        conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
    root.dispose()


@pytest.fixture
def sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'records.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 'one')")
    engine.dispose()
    return url


def test_a_wrong_password_is_in_no_error_in_any_encoding(mariadb):
    url, _root = mariadb
    wrong = sa.make_url(url).set(password=PASSWORD[::-1] + "#?&").render_as_string(hide_password=False)
    engine = sa.create_engine(wrong)
    with pytest.raises(PermanentError) as error, sql_errors(engine.url, "database read"):
        engine.connect()  # 1045, access denied: another attempt fails alike
    message = error.value.message
    assert (
        message.startswith("database read failed: OperationalError: (1045, ") and "Access denied" in message
    )
    for form in encodings(PASSWORD[::-1] + "#?&") | {wrong.split("@")[0].split(":")[-1]}:
        assert form not in message and form not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__  # the driver's text stays out
    engine.dispose()


def test_a_password_the_driver_repeats_is_scrubbed_in_every_encoding(mariadb):
    """The scrub itself: real driver messages that carry each form of the password (as column names)."""
    url, _root = mariadb
    engine = sa.create_engine(url)
    forms = encodings(PASSWORD)
    assert len(forms) == 5 and {s for form in forms for s in shown(form)} <= secrets_of(url)
    for form in forms:
        column = form.replace("`", "``")
        with pytest.raises(PermanentError) as error, sql_errors(url, "database read"):
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT `{column}` FROM t".replace("%", "%%"))
        said = error.value.__context__.orig  # what the driver said, repeating it
        assert form in said.args[1] and "***" in error.value.message, (form, error.value.message)
        for other in forms:
            assert all(s not in error.value.message for s in shown(other)), (other, error.value.message)
    engine.dispose()


def test_a_url_in_a_message_loses_its_password_even_one_that_does_not_parse():
    text = "cannot reach mysql+pymysql://user:pa$$@host/db nor pg://u:x:y@h"
    assert scrub(text, "not a url") == "cannot reach mysql+pymysql://user:***@host/db nor pg://u:***@h"


@pytest.mark.parametrize("how", ["killed", "server gone"])
def test_a_dropped_connection_is_transient(mariadb, how):
    url, root = mariadb
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        if how == "killed":  # an operator's KILL, a failover, a proxy's reset: 2013 lost connection
            with root.connect() as killer:
                killer.exec_driver_sql(f"KILL CONNECTION {conn.connection.dbapi_connection.thread_id()}")
        else:  # the server dropped an idle connection: 2006 gone away (4031 on newer MariaDB)
            conn.exec_driver_sql("SET SESSION wait_timeout = 1")
            threading.Event().wait(2.5)
        with pytest.raises(TransientError) as error, sql_errors(url, "database read"):
            conn.exec_driver_sql("SELECT name FROM t")
    assert error.value.code == "database_failed" and error.value.retryable
    assert any(f"({n}," in error.value.message for n in (2006, 2013, 4031)), error.value.message
    engine.dispose()


def test_a_server_that_does_not_answer_is_transient():
    engine = sa.create_engine(f"mysql+pymysql://root:{urllib.parse.quote_plus(PASSWORD)}@127.0.0.1:1/x")
    with pytest.raises(TransientError) as error, sql_errors(engine.url, "database connect"):
        engine.connect()
    assert "(2003, " in error.value.message  # cannot connect
    assert all(form not in error.value.message for form in encodings(PASSWORD))
    engine.dispose()


def test_a_busy_pool_is_transient(sqlite_file):
    """No error number here: SQLAlchemy's class decides (its pool's TimeoutError)."""
    engine = sa.create_engine(
        sqlite_file, poolclass=sa.QueuePool, pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    with engine.connect():
        with pytest.raises(TransientError, match="database read failed: TimeoutError: QueuePool limit"):
            with sql_errors(engine.url, "database read"):
                engine.connect()
    engine.dispose()


def test_a_locked_sqlite_file_is_transient(sqlite_file):
    holder = sa.create_engine(sqlite_file, connect_args={"isolation_level": None})
    other = sa.create_engine(sqlite_file, connect_args={"timeout": 0})
    with holder.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # another worker's write in progress
        with pytest.raises(TransientError, match="OperationalError: database is locked"):
            with sql_errors(other.url, "database update"), other.begin() as busy:
                busy.exec_driver_sql("UPDATE t SET name = 'two' WHERE id = 1")
        conn.exec_driver_sql("ROLLBACK")
    holder.dispose()
    other.dispose()


@pytest.mark.parametrize(
    "statement, mariadb_says, sqlite_says",
    [
        ("SELECT nope FROM t", "(1054, \"Unknown column 'nope'", "no such column: nope"),
        ("SELEC name FROM t", '(1064, "You have an error in your SQL syntax', 'near "SELEC": syntax error'),
        ("SELECT name FROM gone", '(1146, "Table ', "no such table: gone"),
    ],
)
@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
def test_a_missing_column_or_a_syntax_error_is_permanent(
    request, backend, statement, mariadb_says, sqlite_says
):
    url = (
        request.getfixturevalue("mariadb")[0]
        if backend == "mariadb"
        else request.getfixturevalue("sqlite_file")
    )
    engine = sa.create_engine(url)
    with pytest.raises(PermanentError) as error, sql_errors(url, "database read"):
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    assert not error.value.retryable and error.value.code == "database_failed"
    assert (mariadb_says if backend == "mariadb" else sqlite_says) in error.value.message, error.value.message
    assert "[SQL:" not in error.value.message  # the driver's message, not the statement SQLAlchemy adds
    engine.dispose()
