"""What the write-back into a vendor's own MariaDB table adds to a light job (issue 17).

    python -m bench.writeback [--jobs 50] [--rounds 3] [--redis URL] [--mariadb SERVER-URL]

In one process: the API (Flask's test client) enqueues ``--jobs`` light jobs
(a 256x256 photo resized to 64x64), an in-process worker runs them, once
without a write-back target and once with a three-column one on MariaDB;
rounds alternate. Prints each round's worker time per job and, measured
inside the job, the write-back's own time (median and p95, and the CPU time
of this process in it: the rest is waiting for MariaDB). It uses the Redis
database it is given (flushed) and a MariaDB database of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from PIL import Image

from imgproc.api import create_app
from imgproc.config import Settings
from imgproc.jobtypes import QUEUES
from imgproc.queueing import connect
from imgproc.testing import PhotoServer
from imgproc.worker import Runtime, build_worker

TABLE = """CREATE TABLE data_records (
    pk INT AUTO_INCREMENT PRIMARY KEY, id INT NOT NULL, tenant_id VARCHAR(32) NOT NULL,
    photo_url VARCHAR(255), processed BOOLEAN NOT NULL DEFAULT FALSE, processed_at DATETIME,
    KEY (id, tenant_id))"""
CONFIG = """[vendors.acme]
database_url = "env:ACME_DB_URL"
table = "data_records"
key = "id"
where = { tenant_id = "acme" }

[vendors.acme.columns.process-image]
photo_url = "{url}"
processed = true
processed_at = "{now}"
"""


def _photo() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (180, 60, 20)).save(buf, "JPEG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--mariadb", default="mysql+pymysql://root@127.0.0.1:3306")
    args = parser.parse_args()
    name = f"imgproc_wb_bench_{uuid.uuid4().hex[:8]}"
    server = sa.create_engine(args.mariadb)
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    platform = sa.create_engine(f"{args.mariadb}/{name}")
    with platform.begin() as conn:
        conn.exec_driver_sql(TABLE)
        rows = [{"id": i, "t": t} for i in range(args.jobs) for t in ("acme", "globex")]
        conn.execute(sa.text("INSERT INTO data_records (id, tenant_id) VALUES (:id, :t)"), rows)
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    (tmp / "writeback.toml").write_text(CONFIG)
    settings = Settings(
        redis_url=args.redis,
        database_url=f"sqlite:///{tmp / 'imgproc.db'}",
        storage_dir=str(tmp / "media"),
        fetch_allow_hosts=("127.0.0.1",),
        vendor_concurrency=10_000,
        limit_global="1000000 per minute",
        limit_image="1000000 per minute",
        writeback_file=str(tmp / "writeback.toml"),
        environ={"ACME_DB_URL": f"{args.mariadb}/{name}"},
    )
    conn = connect(settings.redis_url)
    conn.flushdb()
    app = create_app(settings)
    client = app.test_client()
    headers = {"X-API-Key": app.extensions["imgproc"].vendors.add("acme")}
    runtime = Runtime.build(settings, conn=conn)  # the write-back's target checked, as a worker's is
    writeback = runtime.writeback
    inner: list[float] = []
    cpu: list[float] = []
    write = writeback.write

    def timed(*a, **k):
        started, used = time.perf_counter(), time.process_time()
        try:
            return write(*a, **k)
        finally:
            inner.append(time.perf_counter() - started)
            cpu.append(time.process_time() - used)

    writeback.write = timed
    per_job: dict[str, list[float]] = {"without": [], "with": []}
    try:
        with PhotoServer() as photos:
            photos.serve("/p.jpg", _photo())
            for round_ in range(args.rounds):
                for mode in ("without", "with"):
                    runtime.writeback = writeback if mode == "with" else None
                    for i in range(args.jobs):
                        body = {
                            "record_id": str(i),
                            "image_url": photos.url("/p.jpg"),
                            "options": {"resize": [64, 64]},
                        }
                        assert (
                            client.post(
                                "/api/image-queue/process-image-queue", json=body, headers=headers
                            ).status_code
                            == 202
                        )
                    worker = build_worker(settings, QUEUES, runtime=runtime)
                    started = time.perf_counter()
                    worker.work(burst=True, logging_level="WARNING")
                    seconds = time.perf_counter() - started
                    per_job[mode].append(seconds / args.jobs * 1000)
                    print(f"round {round_ + 1} {mode:>7} write-back: {per_job[mode][-1]:.2f} ms per job")
        with platform.connect() as c:
            written = c.exec_driver_sql("SELECT COUNT(*) FROM data_records WHERE processed").scalar_one()
        assert written == args.jobs, written  # acme's rows only, globex's untouched
        without, with_ = statistics.median(per_job["without"]), statistics.median(per_job["with"])
        ms = sorted(s * 1000 for s in inner)
        print(
            f"median of {args.rounds} rounds of {args.jobs} jobs: {without:.2f} ms per job without, "
            f"{with_:.2f} ms with (+{with_ - without:.2f} ms); the write-back itself: "
            f"median {statistics.median(ms):.2f} ms, p95 {ms[int(len(ms) * 0.95) - 1]:.2f} ms "
            f"over {len(ms)} jobs, of which this process's CPU {statistics.median(cpu) * 1000:.2f} ms"
        )
    finally:
        writeback.close()
        runtime.close()
        app.extensions["imgproc"].engine.dispose()
        conn.flushdb()
        platform.dispose()
        with server.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()


if __name__ == "__main__":
    main()
