"""The jobs of the bare-RQ baselines: a no-op (RQ's own cost per job) and a light job's work without imgproc.

``light_work`` does what an imgproc light job does, the plain way but as
cheaply: fetch the photo (a kept-alive connection), decode it, fit it in
64x64, encode it, write the file and a row in SQLite (one connection per
process, WAL, synchronous NORMAL: imgproc's settings). Beside ``noop`` it
says how much of imgproc's light job is the work itself and how much is
imgproc (checks, state, events, metrics, fair share).
"""

from __future__ import annotations

import io
import sqlite3
import uuid
from pathlib import Path

import urllib3
from PIL import Image

#: Kept for the process's life, as imgproc's worker keeps its pools (a SimpleWorker runs every job in it).
_http = urllib3.PoolManager()
_databases: dict[str, sqlite3.Connection] = {}


def create_database(path: str) -> None:
    """The baseline's SQLite file, in WAL mode, before its workers start.

    Once: two workers switching a new file to WAL at the same moment, one is refused ("database is
    locked"; the busy timeout does not cover the switch).
    """
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS results (id TEXT PRIMARY KEY, url TEXT)")
    db.close()


def _database(path: str) -> sqlite3.Connection:
    if path not in _databases:
        db = sqlite3.connect(path, timeout=30)
        db.execute("PRAGMA synchronous=NORMAL")  # per connection, as imgproc's (adapters/db.py)
        _databases[path] = db
    return _databases[path]


def noop() -> None:
    """A job that does nothing."""


def light_work(url: str, folder: str, database: str) -> dict:
    """A 64x64 JPEG of the photo at ``url``, written to ``folder`` and recorded in ``database``."""
    data = _http.request("GET", url, timeout=10).data
    image = Image.open(io.BytesIO(data))
    image.thumbnail((64, 64))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    path = Path(folder) / f"{uuid.uuid4().hex}.jpg"
    path.write_bytes(out.getvalue())
    db = _database(database)
    with db:  # one transaction, committed
        db.execute("INSERT INTO results VALUES (?, ?)", (path.stem, str(path)))
    return {"url": str(path), "bytes": out.tell()}
