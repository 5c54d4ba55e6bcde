"""Shared fixtures: a real Redis and a real MariaDB, flushed around each test.

Like dramatiq's ``check_redis``, a test that needs a service fails when ``CI``
is set and the service is down; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
import redis as redis_lib

from imgproc.config import Settings

# tests/containers runs the built images (`make images`, minutes): `make images-test` sets this.
collect_ignore = [] if os.environ.get("IMGPROC_IMAGES_TEST") else ["containers"]

REDIS_TEST_URL = os.environ.get("IMGPROC_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
MARIADB_SERVER_URL = os.environ.get("IMGPROC_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")


def _service_missing(what: str, exc: Exception):
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``python worker.py`` (or API) process on the test's services."""
    return dict(
        os.environ,
        REDIS_URL=settings.redis_url,
        IMGPROC_DATABASE_URL=settings.database_url,
        IMGPROC_STORAGE_DIR=settings.storage_dir,
        IMGPROC_FETCH_ALLOW_HOSTS="127.0.0.1",
        **extra,
    )


@contextmanager
def production_api(
    var, env: dict[str, str] | None = None, threads: int = 8, queues: str = "", unset: tuple[str, ...] = ()
):
    """A LocalStack with the API under ``deploy/gunicorn.conf.py`` (one process, ``threads`` threads),
    on an embedded Redis of its own whatever ``REDIS_URL`` says; one worker of ``queues`` when given.

    ``unset``: variables the stack would set that its processes must not get (``IMGPROC_PUBLIC_URL``).
    """
    from imgproc.config import ROOT
    from imgproc.testing import LocalStack, local_env

    saved = os.environ.pop("REDIS_URL", None)
    try:
        with LocalStack(var, {**local_env(var), **(env or {})}) as local:
            for name in unset:
                local.env.pop(name, None)
            local.start_api(processes=1, threads=threads, config=str(ROOT / "deploy" / "gunicorn.conf.py"))
            if queues:
                local.wait_workers(local.start_workers(1, queues))
            yield local
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved


CHROMIUM = os.environ.get("IMGPROC_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (which never downloads a browser), one for the whole run.

    Here rather than in tests/web: one Playwright per process, for the page's tests and the others'.
    """
    import shutil
    from pathlib import Path

    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _service_missing("Chromium", FileNotFoundError(f"not at {CHROMIUM} (apt-get install chromium)"))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _service_missing("Playwright for Python (pip install -e '.[dev]')", exc)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


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
def empty_mariadb_url():
    """A fresh, empty MariaDB database for one test, dropped afterwards."""
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
def mariadb_url(empty_mariadb_url):
    """A fresh MariaDB database at this imgproc's schema (``imgproc db upgrade``), dropped afterwards."""
    from imgproc.adapters import schema
    from imgproc.adapters.db import make_engine

    engine = make_engine(Settings(database_url=empty_mariadb_url), check_schema=False)
    schema.upgrade(engine)
    engine.dispose()
    return empty_mariadb_url


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request, settings):
    """The records database, once on SQLite and once on the real MariaDB."""
    from imgproc.adapters.db import make_engine

    if request.param == "mariadb":
        settings = settings.replace(database_url=request.getfixturevalue("mariadb_url"))
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path):
    """Settings for one test: its own SQLite file and storage folder, fast retries."""
    return Settings(
        redis_url=REDIS_TEST_URL,
        database_url=f"sqlite:///{tmp_path / 'imgproc.db'}",
        storage_dir=str(tmp_path / "media"),
        retry_backoff=1.0,
        fetch_allow_hosts=("127.0.0.1",),
        # Webhooks: 3 attempts a second apart, a receiver answers within 3 s.
        webhook_backoff=(1, 1),
        webhook_timeout=3.0,
        # Tests poll quickly; tests/test_ratelimits.py sets the limits it checks.
        limit_global="100000 per minute",
        limit_image="100000 per minute",
        limit_bg_removal="100000 per minute",
        limit_bulk="100000 per minute",
        limit_session_reads="100000 per minute",
    )


@pytest.fixture
def app(settings, redis_conn):
    from imgproc.api import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    close_app(app)


def close_app(app) -> None:
    """Close what an app opened: its database engine and its Redis connections.

    A socket left for the garbage collector is a ResourceWarning, an error under filterwarnings.
    """
    app.extensions["imgproc"].engine.dispose()
    app.extensions["imgproc"].events.close()
    app.extensions["imgproc"].conn.connection_pool.disconnect()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def vendor_key(app):
    """``vendor_key("acme")`` creates the vendor and returns the X-API-Key header for it."""

    def make(name: str, operator: bool = False) -> dict:
        return {"X-API-Key": app.extensions["imgproc"].vendors.add(name, operator=operator)}

    return make


@pytest.fixture
def photo_server():
    from imgproc.testing import PhotoServer

    with PhotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def photos():
    """Real photos from scikit-image, as JPEG bytes: a face, two faces, no face."""
    from imgproc.testing import sample_photos

    return sample_photos()


@pytest.fixture(scope="session")
def models():
    """ISNet and BlazeFace, loaded once for the whole test session (as a worker does)."""
    from imgproc.processing.models import BackgroundRemover, FaceDetector

    settings = Settings()
    remover, detector = BackgroundRemover(settings), FaceDetector(settings)
    yield remover, detector
    detector.close()


@contextmanager
def worker_runtime(settings: Settings, redis_conn, models=(None, None)):
    """A worker's runtime on the test's Redis, database and storage; ``models``: (remover, detector)."""
    from imgproc.worker import Runtime

    runtime = Runtime.build(settings, conn=redis_conn, remover=models[0], detector=models[1])
    try:
        yield runtime
    finally:
        runtime.close()  # not the session's models: they were handed in


@pytest.fixture
def runtime(settings, redis_conn, models):
    """A worker's runtime on the test's Redis, database and storage, with the session's models."""
    with worker_runtime(settings, redis_conn, models) as rt:
        yield rt


@pytest.fixture
def work(runtime):
    """``work()`` runs an in-process worker until no job is queued or waiting for a retry."""
    import time

    from rq.registry import ScheduledJobRegistry

    from imgproc.jobtypes import QUEUES
    from imgproc.worker import build_worker

    def run(timeout: float = 120):
        deadline = time.monotonic() + timeout
        worker = build_worker(runtime.settings, QUEUES, runtime=runtime)
        while time.monotonic() < deadline:
            worker.work(burst=True, with_scheduler=True)
            waiting = sum(ScheduledJobRegistry(q, connection=runtime.conn).count for q in QUEUES)
            if not waiting:
                return worker
            time.sleep(0.3)
        raise TimeoutError("jobs still waiting after the timeout")

    return run


@pytest.fixture
def deliver(runtime):
    """``deliver()`` runs an in-process webhook worker until no delivery is queued or waiting for a retry."""
    import time

    from rq.registry import ScheduledJobRegistry

    from imgproc.jobtypes import QUEUE_WEBHOOKS
    from imgproc.worker import build_worker

    def run(timeout: float = 60):
        deadline = time.monotonic() + timeout
        worker = build_worker(runtime.settings, (QUEUE_WEBHOOKS,), runtime=runtime)
        while time.monotonic() < deadline:
            worker.work(burst=True, with_scheduler=True)
            if not ScheduledJobRegistry(QUEUE_WEBHOOKS, connection=runtime.conn).count:
                return worker
            time.sleep(0.3)
        raise TimeoutError("deliveries still waiting after the timeout")

    return run


@pytest.fixture
def cli(monkeypatch, capsys, settings, redis_conn):
    """``cli("jobs", "failed")`` runs ``imgproc`` on the test's Redis and database: (code, stdout, stderr)."""
    monkeypatch.setenv("REDIS_URL", settings.redis_url)  # conftest's REDIS_TEST_URL
    monkeypatch.setenv("IMGPROC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IMGPROC_STORAGE_DIR", settings.storage_dir)
    monkeypatch.setenv("IMGPROC_FETCH_ALLOW_HOSTS", "127.0.0.1")

    from imgproc.tools.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
