"""Redis restarts (with AOF persistence): queued jobs survive, API and workers reconnect by themselves."""

import time

import redis as redis_lib
from rq.suspension import resume, suspend

from imgproc.api import create_app
from imgproc.testing import wait_for

LIGHT = "/api/image-queue/process-image-queue"


def test_redis_restart_loses_no_queued_job(settings, own_redis, photo_server, photos, worker_env, workers):
    photo_server.serve("/coffee.jpg", photos["coffee"])
    app = create_app(settings.replace(redis_url=own_redis.url))
    client = app.test_client()
    acme = {"X-API-Key": app.extensions["imgproc"].vendors.add("acme")}
    conn = redis_lib.Redis.from_url(own_redis.url)
    (worker,) = workers(worker_env(REDIS_URL=own_redis.url))
    wait_for(lambda: worker.ready(conn), 60, "the worker")

    suspend(conn)  # hold the jobs in the queue while Redis goes down
    time.sleep(6)  # past the worker's current wait for a job (at most 5 s), so it sees the suspension
    body = lambda i: {"record_id": f"r{i}", "image_url": photo_server.url("/coffee.jpg")}  # noqa: E731
    ids = [client.post(LIGHT, json=body(i), headers=acme).json["job_id"] for i in range(10)]
    own_redis.stop()
    down_at = time.monotonic()
    response = client.post(LIGHT, json=body(99), headers=acme)
    assert response.status_code == 503 and response.json["error"]["code"] == "unavailable"
    health = client.get("/health")
    assert health.status_code == 503 and health.json["failing"] == ["redis"]
    time.sleep(3)  # the worker meets the outage
    assert worker.poll() is None, worker.log()

    own_redis.start()
    outage = time.monotonic() - down_at
    states = [client.get(f"/api/image-queue/job/{i}", headers=acme).json["state"] for i in ids]
    assert states == ["queued"] * 10  # restored from the AOF
    resume(conn)
    late = client.post(LIGHT, json=body(10), headers=acme)  # the same API app, no restart
    assert late.status_code == 202
    ids.append(late.json["job_id"])
    back_at = time.monotonic()
    poll = lambda: [client.get(f"/api/image-queue/job/{i}", headers=acme).json["state"] for i in ids]  # noqa: E731
    wait_for(lambda: poll() == ["finished"] * 11, 60, "the queued jobs to finish", interval=0.2)
    print(
        f"\nRedis down {outage:.1f} s; "
        f"11 jobs finished {time.monotonic() - back_at:.1f} s after it came back; "
        "same worker process"
    )
    assert worker.poll() is None
    assert client.get("/health").json["redis"] == "ok"
    app.extensions["imgproc"].engine.dispose()
