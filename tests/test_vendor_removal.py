"""A removed vendor's name stays taken until its data is purged (issue 22 finding 11).

Everything is found by the vendor's name: a new vendor given a removed one's name saw its jobs,
results, records and webhook secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rq.job import Job

from imgproc.adapters.records import Records
from imgproc.adapters.webhooks import WebhookStore
from imgproc.queueing import batches

API = "/api/image-queue"


@pytest.fixture
def runtime(settings, redis_conn):
    """A worker's runtime without the models: light jobs need none."""
    from tests.conftest import worker_runtime

    with worker_runtime(settings, redis_conn) as rt:
        yield rt


def light(photo_server, photos, record_id: str) -> dict:
    photo_server.serve("/coffee.jpg", photos["coffee"])
    return {
        "record_id": record_id,
        "image_url": photo_server.url("/coffee.jpg"),
        "options": {"resize": [32, 32]},
    }


def test_a_removed_name_is_not_given_to_a_new_vendor(
    client,
    vendor_key,
    cli,  # noqa: F811
    photo_server,
    photos,
):
    old = vendor_key("acme")
    job = client.post(
        f"{API}/process-image-queue", json=light(photo_server, photos, "payroll-7"), headers=old
    )
    assert job.status_code == 202
    assert cli("vendors", "remove", "acme")[0] == 0
    code, out, err = cli("vendors", "add", "acme")
    # Before: added, and the new key listed the removed vendor's job 'payroll-7'.
    assert code == 1 and "acme" not in out and "imgproc vendors purge acme" in err, (out, err)
    assert cli("vendors", "list")[1] == ""
    assert cli("vendors", "rotate", "acme")[0] == 1  # a removed vendor gets no new key either


def test_purge_deletes_what_was_kept_under_the_name_and_frees_it(
    app,
    client,
    vendor_key,
    cli,  # noqa: F811
    photo_server,
    photos,
    work,
    redis_conn,
    settings,
):
    acme, globex = vendor_key("acme"), vendor_key("globex")
    store = WebhookStore(app.extensions["imgproc"].engine)
    old_secret = store.secret("acme")
    done = client.post(
        f"{API}/process-image-queue", json=light(photo_server, photos, "a1"), headers=acme
    ).json
    theirs = client.post(
        f"{API}/process-image-queue", json=light(photo_server, photos, "g1"), headers=globex
    ).json
    work()
    items = [light(photo_server, photos, "b1"), light(photo_server, photos, "b2")]
    batch = client.post(f"{API}/bulk-process-image", json={"items": items}, headers=acme).json
    batches.mark_ended(redis_conn, batch["batch_id"], batch["job_ids"][0], 2, 60)  # as a worker notes it
    keyed = {**light(photo_server, photos, "k1"), "idempotency_key": "once"}
    waiting = client.post(f"{API}/process-image-queue", json=keyed, headers=acme).json  # in its lane
    media = Path(settings.storage_dir)
    assert (media / "acme").is_dir() and (media / "globex").is_dir()
    assert cli("vendors", "remove", "acme")[0] == 0
    assert cli("vendors", "purge", "globex")[0] == 1  # an active vendor is never purged

    Job.fetch(waiting["job_id"], connection=redis_conn).set_status("started")  # as if a worker ran it
    code, _, err = cli("vendors", "purge", "acme")
    assert code == 1 and "1 job(s) of acme are running" in err
    Job.fetch(waiting["job_id"], connection=redis_conn).set_status("queued")
    code, out, err = cli("vendors", "purge", "acme")
    assert code == 0, err
    print(out)
    assert "vendor acme purged (4 jobs, 1 result files, 1 records" in out and "the name is free" in out

    left = [key for key in redis_conn.scan_iter() if b"acme" in key or batch["batch_id"].encode() in key]
    assert left == [], left
    for job_id in (done["job_id"], waiting["job_id"], *batch["job_ids"]):
        assert not Job.exists(job_id, connection=redis_conn)
    assert not any(
        b"acme|" in field
        for key in redis_conn.scan_iter("imgproc:usage:*")
        for field in redis_conn.hkeys(key)
    )
    assert not (media / "acme").exists() and (media / "globex").is_dir()
    assert Job.fetch(theirs["job_id"], connection=redis_conn).get_status() == "finished"

    code, out, _ = cli("vendors", "add", "acme")
    assert code == 0
    new = {"X-API-Key": out.split()[-1]}
    assert client.get(f"{API}/jobs", headers=new).json["jobs"] == []
    assert client.get(f"{API}/job/{done['job_id']}", headers=new).status_code == 404
    assert client.get(f"{API}/batch/{batch['batch_id']}", headers=new).status_code == 404
    assert store.secret("acme") != old_secret
    assert Records(app.extensions["imgproc"].engine).count("acme") == 0
    again = client.post(f"{API}/process-image-queue", json=keyed, headers=new)
    assert again.status_code == 202 and again.json["job_id"] != waiting["job_id"]  # the key is free again
    assert client.get(f"{API}/jobs", headers=globex).json["total"] == 1
