"""MariaDB down during write-back, and a CDN that fails: retried, no work done twice, no secret leaked."""

import time

from rq.job import Job

from imgproc.api import create_app
from imgproc.testing import wait_for
from tests.cloudinary_stub import CloudinaryStub
from tests.faults.conftest import STOP_GRACE, TcpLink

LIGHT = "/api/image-queue/process-image-queue"


def test_database_down_during_write_back(
    settings, mariadb_url, photo_server, photos, worker_env, workers, redis_conn
):
    import sqlalchemy as sa

    photo_server.serve("/coffee.jpg", photos["coffee"])
    host_url = sa.make_url(mariadb_url)
    link = TcpLink((host_url.host, host_url.port or 3306))
    linked_url = host_url.set(port=link.port).render_as_string(hide_password=False)
    api = create_app(settings.replace(database_url=mariadb_url))  # the API reaches MariaDB directly
    client, acme = api.test_client(), {"X-API-Key": api.extensions["imgproc"].vendors.add("acme")}
    with CloudinaryStub() as cdn:
        (worker,) = workers(worker_env(IMGPROC_DATABASE_URL=linked_url, CLOUDINARY_URL=cdn.url))
        wait_for(lambda: worker.ready(redis_conn), 60, "the worker")
        link.cut()  # MariaDB unreachable for the worker from now on
        job_id = client.post(
            LIGHT, json={"record_id": "db", "image_url": photo_server.url("/coffee.jpg")}, headers=acme
        ).json["job_id"]
        poll = lambda: client.get(f"/api/image-queue/job/{job_id}", headers=acme).json  # noqa: E731
        job = wait_for(lambda: (j := poll())["state"] == "scheduled" and j, 30, "a failed write-back")
        assert job["error"]["code"] == "database_failed" and job["error"]["retryable"]
        assert job["stage"] == "saving"
        cut_for = time.monotonic()
        time.sleep(1.5)
        link.restore()
        job = wait_for(lambda: (j := poll())["state"] in ("finished", "failed") and j, 30, "the retry")
        print(
            f"\nMariaDB cut: write-back failed, retried, finished {time.monotonic() - cut_for:.1f} s "
            f"after the cut ended; attempts {job['attempts']}"
        )
        assert job["state"] == "finished", worker.log()
        assert job["attempts"] >= 2
        assert photo_server.hits["/coffee.jpg"] == 1  # processed once
        assert len(cdn.uploads) == 1  # uploaded once: the retry reused the stored result
        with api.extensions["imgproc"].engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT writes, processed_url FROM records WHERE record_id = 'db'")
            ).all()
        assert rows == [(1, job["result"]["url"])]  # written once
    link.close()
    api.extensions["imgproc"].engine.dispose()


def test_cdn_errors_are_retried_and_bad_credentials_fail_at_once(
    client, vendor_key, settings, photo_server, photos, worker_env, workers, redis_conn
):
    acme = vendor_key("acme")
    photo_server.serve("/coffee.jpg", photos["coffee"])
    body = lambda r: {"record_id": r, "image_url": photo_server.url("/coffee.jpg")}  # noqa: E731
    poll = lambda i: client.get(f"/api/image-queue/job/{i}", headers=acme).json  # noqa: E731
    with CloudinaryStub() as cdn:
        cdn.fail_next(1, status=500)
        cdn.delay_next(1, 3.0)  # second attempt: past the 1 s upload timeout
        (worker,) = workers(worker_env(CLOUDINARY_URL=cdn.url, IMGPROC_STORAGE_TIMEOUT="1"))
        wait_for(lambda: worker.ready(redis_conn), 60, "the worker")
        flaky = client.post(LIGHT, json=body("flaky"), headers=acme).json["job_id"]
        job = wait_for(
            lambda: (j := poll(flaky))["state"] in ("finished", "failed") and j, 60, "the flaky upload"
        )
        assert job["state"] == "finished" and job["attempts"] == 3, (job, worker.log())
        worker.stop(STOP_GRACE)

        secret = cdn.url.split(":")[2].split("@")[0]
        wrong_secret = "not-the-" + secret
        bad_url = cdn.url.replace(f":{secret}@", f":{wrong_secret}@")
        (bad,) = workers(worker_env(CLOUDINARY_URL=bad_url))
        wait_for(lambda: bad.ready(redis_conn), 60, "the misconfigured worker")
        denied = client.post(LIGHT, json=body("denied"), headers=acme)
        job = wait_for(
            lambda: (j := poll(denied.json["job_id"]))["state"] in ("finished", "failed") and j,
            60,
            "the denied upload",
        )
        assert job["state"] == "failed" and job["attempts"] == 1
        assert job["error"]["code"] == "storage_failed" and not job["error"]["retryable"]
        (message,) = [m for status, m in cdn.rejections if status == 401]  # "Invalid Signature <sig>. ..."
        signature = message.split()[2].rstrip(".")
        bad.stop(STOP_GRACE)
        exposed = {
            "the API's answer": str(job),
            "the job in Redis": str(Job.fetch(denied.json["job_id"], connection=redis_conn).to_dict()),
            "the worker's log": bad.log(),
        }
        for where, text in exposed.items():
            for name, value in (
                ("the secret", secret),
                ("the wrong secret", wrong_secret),
                ("the URL", bad_url),
                ("the signature", signature),
            ):
                assert value not in text, f"{name} appears in {where}"
