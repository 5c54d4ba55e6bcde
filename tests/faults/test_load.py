"""A 1,000-job load from 5 vendors on 2 workers: everything finishes, exactly once, in bounded memory.

``make soak`` runs the same test with more jobs (IMGPROC_SOAK_JOBS).
"""

import io
import os
import statistics
import time

import psutil
import sqlalchemy as sa
from PIL import Image
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from imgproc.api import create_app
from imgproc.testing import wait_for
from tests.cloudinary_stub import CloudinaryStub

JOBS = int(os.environ.get("IMGPROC_SOAK_JOBS", "1000"))
VENDORS = 5
BULK = "/api/image-queue/bulk-process-image"


def small_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()


def test_load_from_five_vendors(settings, mariadb_url, redis_conn, photo_server, worker_env, workers):
    body = small_jpeg()
    for i in range(JOBS):
        photo_server.serve(f"/p/{i}.jpg", body)
    api = create_app(settings.replace(database_url=mariadb_url))
    client = api.test_client()
    keys = [{"X-API-Key": api.extensions["imgproc"].vendors.add(f"vendor-{v}")} for v in range(VENDORS)]
    ops = {"X-API-Key": api.extensions["imgproc"].vendors.add("ops", operator=True)}
    with CloudinaryStub() as cdn:
        pool = workers(
            worker_env(
                IMGPROC_DATABASE_URL=mariadb_url, CLOUDINARY_URL=cdn.url, IMGPROC_WORKERS_PER_HOST="2"
            ),
            "bg-removal,face-crop,image-processing",
            n=2,
        )
        wait_for(lambda: all(w.ready(redis_conn) for w in pool), 120, "2 workers with their models")
        procs = [psutil.Process(w.pid) for w in pool]
        rss = lambda: sum(p.memory_info().rss for p in procs)  # noqa: E731

        started = time.monotonic()
        job_ids = []
        per_vendor = JOBS // VENDORS
        for chunk_start in range(0, per_vendor, 100):  # bulks of 100, vendors interleaved
            for v, key in enumerate(keys):
                items = [
                    {
                        "record_id": f"v{v}-{i}",
                        "image_url": photo_server.url(f"/p/{v * per_vendor + i}.jpg"),
                        "options": {"resize": [32, 32], "format": "webp"},
                    }
                    for i in range(chunk_start, min(chunk_start + 100, per_vendor))
                ]
                response = client.post(BULK, json={"items": items}, headers=key)
                assert response.status_code == 202, response.json
                job_ids += response.json["job_ids"]
        enqueued = time.monotonic() - started
        finished = FinishedJobRegistry("image-processing", connection=redis_conn)
        failed = FailedJobRegistry("image-processing", connection=redis_conn)

        def done_count(target):
            assert failed.count == 0, [
                Job.fetch(i, connection=redis_conn).meta.get("error") for i in failed.get_job_ids()
            ]
            return finished.count >= target

        wait_for(lambda: done_count(100), 300, "the first 100 jobs", interval=0.02)
        rss_at_100 = rss()  # about 50 jobs per worker
        wait_for(lambda: done_count(JOBS), 1200, f"all {JOBS} jobs", interval=0.1)
        elapsed = time.monotonic() - started
        rss_at_end = rss()

        jobs = Job.fetch_many(job_ids, connection=redis_conn)
        latency = sorted((j.ended_at - j.enqueued_at).total_seconds() for j in jobs)
        p50, p99 = statistics.median(latency), latency[int(len(latency) * 0.99) - 1]
        stats = client.get("/api/image-queue/queue-stats", headers=ops).json
        with api.extensions["imgproc"].engine.connect() as conn:
            rows, writes = conn.execute(sa.text("SELECT COUNT(*), SUM(writes = 1) FROM records")).one()
        public_ids = [u.public_id for u in cdn.uploads]
        print(
            f"\n{JOBS} light jobs, {VENDORS} vendors, 2 workers: enqueued in {enqueued:.1f} s, "
            f"all finished in {elapsed:.1f} s = {JOBS / elapsed:.0f} jobs/s; "
            f"enqueue-to-finish p50 {p50:.2f} s, p99 {p99:.2f} s; "
            f"worker RSS (2 workers) {rss_at_100 / 2**20:.0f} MiB after ~50 jobs each, "
            f"{rss_at_end / 2**20:.0f} MiB after ~{JOBS // 2} each"
        )

    assert all(j.get_status(refresh=False) == "finished" for j in jobs)
    assert stats["queues"]["image-processing"]["finished"] == JOBS
    assert sum(v["finished"] for v in stats["vendors"].values()) == JOBS
    assert (rows, writes) == (JOBS, JOBS)  # every record row written exactly once
    assert len(public_ids) == len(set(public_ids)) == JOBS  # no result uploaded twice
    assert set(photo_server.hits[f"/p/{i}.jpg"] for i in range(JOBS)) == {1}  # no photo processed twice
    assert rss_at_end <= rss_at_100 * 1.05 + 30 * 2**20, "worker memory grew"
    api.extensions["imgproc"].engine.dispose()


def test_finished_and_failed_jobs_expire(client, vendor_key, photo_server, photos, runtime, work, redis_conn):
    """Nothing piles up in Redis: results and failures go after their TTLs, with their registry entries."""
    # Long enough that the first job's result outlives the second job on a busy machine.
    runtime.settings = runtime.settings.replace(result_ttl=4, failure_ttl=4)
    client.application.extensions["imgproc"].jobs.settings = runtime.settings
    acme = vendor_key("acme")
    photo_server.serve("/ok.jpg", photos["coffee"])
    photo_server.serve("/bad.jpg", b"not an image")
    ids = [
        client.post(
            "/api/image-queue/process-image-queue",
            headers=acme,
            json={"record_id": r, "image_url": photo_server.url(f"/{r}.jpg")},
        ).json["job_id"]
        for r in ("ok", "bad")
    ]
    work()
    states = [client.get(f"/api/image-queue/job/{i}", headers=acme).json["state"] for i in ids]
    assert states == ["finished", "failed"]
    time.sleep(4.5)
    assert [client.get(f"/api/image-queue/job/{i}", headers=acme).status_code for i in ids] == [404, 404]
    assert not list(redis_conn.scan_iter("rq:job:*"))
    assert not list(redis_conn.scan_iter("rq:results:*"))
