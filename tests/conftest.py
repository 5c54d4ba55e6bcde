"""Shared fixtures: a real Redis and a real MariaDB, flushed around each test.

Like dramatiq's ``check_redis``, a test that needs a service fails when ``CI``
is set and the service is down; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis as redis_lib

from imgproc.config import Settings

REDIS_TEST_URL = os.environ.get("IMGPROC_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
MARIADB_SERVER_URL = os.environ.get(
    "IMGPROC_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306"
)


def _service_missing(what: str, exc: Exception):
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def redis_conn():
    conn = redis_lib.Redis.from_url(REDIS_TEST_URL)
    try:
        conn.ping()
    except redis_lib.exceptions.ConnectionError as exc:
        _service_missing("Redis", exc)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def mariadb_url():
    """A fresh MariaDB database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"imgproc_test_{uuid.uuid4().hex[:10]}"
    server = sa.create_engine(MARIADB_SERVER_URL)
    try:
        with server.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        server.dispose()
        _service_missing("MariaDB", exc)
    yield f"{MARIADB_SERVER_URL}/{name}"
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    server.dispose()


@pytest.fixture
def settings(tmp_path):
    """Settings for one test: its own SQLite file and storage folder, fast retries."""
    return Settings(
        redis_url=REDIS_TEST_URL,
        database_url=f"sqlite:///{tmp_path / 'imgproc.db'}",
        storage_dir=str(tmp_path / "media"),
        retry_backoff=1.0,
        fetch_allow_hosts=("127.0.0.1",),
    )
