"""Finding jobs by filter and acting on many (issue 26 part 5): GET /jobs?..., POST /jobs/cancel|retry.

Jobs are enqueued through the API and run by an in-process worker (no models: light jobs on a
photo finish, on a file that is not one fail for good), so each state is reached the way the
service reaches it; every expectation is worked out from what was enqueued.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from rq.job import Job

from imgproc.queueing import jobindex
from imgproc.queueing.keys import KEY_VENDOR_JOBS
from tests.conftest import worker_runtime

API = "/api/image-queue"
LIGHT = f"{API}/process-image-queue"
FACE = f"{API}/crop-face-queue"


@pytest.fixture
def settings(settings):
    return settings.replace(max_attempts=1)


@pytest.fixture
def runtime(settings, redis_conn):
    """conftest's ``work()`` runs jobs without models: light jobs on a photo finish, the others fail."""
    with worker_runtime(settings, redis_conn) as rt:
        yield rt


@pytest.fixture
def urls(photo_server, photos):
    photo_server.serve("/coffee.jpg", photos["coffee"])
    photo_server.serve("/not-a-photo.jpg", b"not an image")
    return {"good": photo_server.url("/coffee.jpg"), "bad": photo_server.url("/not-a-photo.jpg")}


def enqueue(client, headers, record_id: str, url: str, endpoint: str = LIGHT) -> str:
    answer = client.post(endpoint, json={"record_id": record_id, "image_url": url}, headers=headers)
    assert answer.status_code == 202, answer.json
    return answer.json["job_id"]


def bulk(client, headers, record_ids: list[str], url: str) -> tuple[str, list[str]]:
    items = [{"record_id": r, "image_url": url} for r in record_ids]
    answer = client.post(f"{API}/bulk-process-image", json={"items": items}, headers=headers)
    assert answer.status_code == 202, answer.json
    return answer.json["batch_id"], answer.json["job_ids"]


def search(client, headers, per_page: int = 100, **params) -> list[dict]:
    """Every job a filter finds, page after page by cursor."""
    found, cursor = [], None
    while True:
        query = {**params, "per_page": per_page, **({"cursor": cursor} if cursor else {})}
        answer = client.get(f"{API}/jobs", query_string=query, headers=headers)
        assert answer.status_code == 200, answer.json
        found += answer.json["jobs"]
        cursor = answer.json["next_cursor"]
        if cursor is None:
            return found


def ids(jobs: list[dict]) -> list[str]:
    return [j["job_id"] for j in jobs]


def refused(answer, status: int, field: str) -> None:
    assert answer.status_code == status, answer.json
    if status == 400:
        assert answer.json["error"]["code"] == "invalid_request"
        assert answer.json["error"]["details"]["field"] == field, answer.json


@pytest.fixture
def acme_jobs(client, vendor_key, urls, work):
    """acme's jobs in every state the worker gives: finished, failed, queued (light and crop-face)."""
    acme = vendor_key("acme")
    made = {
        "finished": [enqueue(client, acme, f"emp-{i:03}", urls["good"]) for i in range(3)],
        "failed": [enqueue(client, acme, f"bad-{i}", urls["bad"]) for i in range(3)],
    }
    work()
    time.sleep(0.01)
    made["middle"] = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    made["queued"] = [enqueue(client, acme, f"emp-{i:03}", urls["good"]) for i in range(3, 6)]
    made["face"] = [enqueue(client, acme, "face-1", urls["good"], FACE)]
    made["batch"], made["bulk"] = bulk(client, acme, ["blk-1", "blk-2", "blk-3"], urls["good"])
    made["headers"] = acme
    return made


def test_each_filter_finds_exactly_its_jobs(client, acme_jobs):
    acme, made = acme_jobs["headers"], acme_jobs
    waiting = made["queued"] + made["face"] + made["bulk"]
    everything = made["finished"] + made["failed"] + waiting
    assert set(ids(search(client, acme, state="finished"))) == set(made["finished"])
    assert set(ids(search(client, acme, state="failed"))) == set(made["failed"])
    assert set(ids(search(client, acme, state="queued"))) == set(waiting)
    assert set(ids(search(client, acme, type="crop-face"))) == set(made["face"])
    assert set(ids(search(client, acme, type="process-image"))) == set(everything) - set(made["face"])
    assert set(ids(search(client, acme, batch_id=made["batch"]))) == set(made["bulk"])
    # A record id exactly, or a prefix with a trailing '*'.
    exact = search(client, acme, record_id="emp-001")
    assert [j["record_id"] for j in exact] == ["emp-001"]
    assert set(ids(search(client, acme, record_id="emp-*"))) == set(made["finished"] + made["queued"])
    assert set(ids(search(client, acme, record_id="emp-00*", state="queued"))) == set(made["queued"])
    # A time range: after is inclusive, before exclusive, so the two halves hold every job once.
    later = ids(search(client, acme, created_after=made["middle"]))
    earlier = ids(search(client, acme, created_before=made["middle"]))
    assert set(later) == set(waiting) and set(earlier) == set(made["finished"] + made["failed"])
    # Filters together, newest first.
    both = search(client, acme, state="queued", type="process-image", created_after=made["middle"])
    assert set(ids(both)) == set(made["queued"] + made["bulk"])
    # Newest first by enqueue: the requests in reverse, a bulk's jobs (one enqueue) together.
    listed = ids(search(client, acme))
    singles = made["finished"] + made["failed"] + made["queued"] + made["face"]
    assert set(listed[:3]) == set(made["bulk"]) and listed[3:] == singles[::-1]
    assert not search(client, acme, record_id="nobody*")


def test_cursor_pages_have_no_duplicates_or_gaps_while_jobs_are_added(client, vendor_key, urls):
    acme = vendor_key("acme")
    first = [enqueue(client, acme, f"r-{i}", urls["good"]) for i in range(8)]
    _, batch = bulk(client, acme, [f"b-{i}" for i in range(10)], urls["good"])  # one score for ten
    first += [enqueue(client, acme, f"r-{i}", urls["good"]) for i in range(8, 12)]
    existing = set(first + batch)
    seen, cursor, added = [], None, []
    while True:
        query = {"type": "process-image", "per_page": 3, **({"cursor": cursor} if cursor else {})}
        answer = client.get(f"{API}/jobs", query_string=query, headers=acme).json
        assert len(answer["jobs"]) <= 3
        seen += ids(answer["jobs"])
        added.append(enqueue(client, acme, f"new-{len(added)}", urls["good"]))  # newer than every page
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))  # no duplicates
    assert set(seen) == existing  # no gaps; the jobs added meanwhile are newer than the first page
    # The cursor alone carries its filter; with a different one it is refused.
    page = client.get(f"{API}/jobs", query_string={"state": "queued", "per_page": 2}, headers=acme).json
    alone = client.get(f"{API}/jobs", query_string={"cursor": page["next_cursor"]}, headers=acme)
    assert alone.status_code == 200 and not set(ids(alone.json["jobs"])) & set(ids(page["jobs"]))
    other = {"cursor": page["next_cursor"], "state": "failed"}
    refused(client.get(f"{API}/jobs", query_string=other, headers=acme), 400, "cursor")


def test_a_vendor_never_sees_or_counts_another_vendors_jobs(client, vendor_key, urls):
    acme, beta, ops = vendor_key("acme"), vendor_key("beta"), vendor_key("ops", operator=True)
    mine = [enqueue(client, acme, f"same-{i}", urls["good"]) for i in range(4)]
    theirs = [enqueue(client, beta, f"same-{i}", urls["good"]) for i in range(2)]
    assert set(ids(search(client, beta, record_id="same-*"))) == set(theirs)
    assert set(ids(search(client, beta, state="queued"))) == set(theirs)
    # The vendor filter is an operator's: another vendor's name is refused, one's own is its own.
    refused(client.get(f"{API}/jobs", query_string={"vendor": "acme"}, headers=beta), 403, "")
    assert set(ids(search(client, beta, vendor="beta"))) == set(theirs)
    # A cursor made for acme's jobs does not open them to beta.
    cursor = client.get(f"{API}/jobs", query_string={"state": "queued", "per_page": 1}, headers=acme)
    forged = client.get(f"{API}/jobs", query_string={"cursor": cursor.json["next_cursor"]}, headers=beta)
    refused(forged, 403, "")
    # Counts and actions on beta's side leave acme's jobs alone.
    dry = client.post(f"{API}/jobs/cancel", json={"record_id": "same-*", "dry_run": True}, headers=beta)
    assert dry.json["count"] == 2 and dry.json["matched"] == 2
    refused(
        client.post(f"{API}/jobs/cancel", json={"vendor": "acme", "state": "queued"}, headers=beta), 403, ""
    )
    assert client.post(f"{API}/jobs/cancel", json={"record_id": "same-*"}, headers=beta).json["count"] == 2
    assert {j["state"] for j in search(client, acme)} == {"queued"}
    # An operator finds everyone's, or one vendor's.
    assert set(ids(search(client, ops, record_id="same-*"))) == set(mine + theirs)
    assert set(ids(search(client, ops, vendor="acme"))) == set(mine)
    assert {j["vendor"] for j in search(client, ops, state="canceled")} == {"beta"}


def test_a_dry_run_counts_what_the_cancel_then_does(client, vendor_key, acme_jobs, app):
    ops = vendor_key("ops", operator=True)
    body = {"vendor": "acme", "record_id": "emp-*"}  # 3 finished, 3 queued: only the queued are taken
    dry = client.post(f"{API}/jobs/cancel", json={**body, "dry_run": True}, headers=ops).json
    assert (dry["count"], dry["matched"], dry["refused_count"]) == (3, 6, 3)
    assert {r["reason"] for r in dry["refused"]} == {"has ended (finished)"}
    assert not search(client, acme_jobs["headers"], state="canceled")  # a dry run changes nothing
    done = client.post(f"{API}/jobs/cancel", json=body, headers=ops).json
    assert done["count"] == dry["count"] and not done["dry_run"]
    canceled = search(client, acme_jobs["headers"], state="canceled")
    assert set(ids(canceled)) == set(acme_jobs["queued"])
    again = client.post(f"{API}/jobs/cancel", json={**body, "dry_run": True}, headers=ops).json
    assert again["count"] == 0
    # The operator's action is in the audit log, with its filter; the dry runs are not.
    entries = client.get(f"{API}/audit", query_string={"action": "jobs.cancel"}, headers=ops).json["entries"]
    assert len(entries) == 1 and entries[0]["target"] == "filter:vendor=acme&record_id=emp-*"
    assert entries[0]["details"]["filter"] == body and entries[0]["details"]["count"] == 3


def test_retry_of_failed_jobs_by_filter(client, acme_jobs, work):
    acme = acme_jobs["headers"]
    body = {"state": "failed", "record_id": "bad-*"}
    dry = client.post(f"{API}/jobs/retry", json={**body, "dry_run": True}, headers=acme).json
    assert dry["count"] == len(acme_jobs["failed"]) and dry["refused_count"] == 0
    done = client.post(f"{API}/jobs/retry", json=body, headers=acme).json
    assert done["count"] == dry["count"]
    assert not search(client, acme, state="failed")
    assert set(ids(search(client, acme, record_id="bad-*", state="queued"))) == set(acme_jobs["failed"])
    work()  # not a photo still: they fail again, and are found failed again
    assert set(ids(search(client, acme, state="failed", record_id="bad-*"))) == set(acme_jobs["failed"])
    # Retrying finished jobs is refused with the reason, job by job.
    finished = client.post(f"{API}/jobs/retry", json={"record_id": "emp-*"}, headers=acme).json
    assert finished["count"] == 0 and finished["refused_count"] == 6  # 3 finished before, 3 just now
    assert {r["reason"] for r in finished["refused"]} == {"is finished, not failed"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"state": "lost"}, "state"),
        ({"type": "resize"}, "type"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "2025-02-01", "created_before": "2025-01-01"}, "created_after"),
        ({"record_id": "*"}, "record_id"),
        ({"record_id": "a\nb"}, "record_id"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"state": "failed", "page": 2}, "page"),
        ({"state": "failed", "per_page": "many"}, "per_page"),
    ],
)
def test_a_bad_filter_is_a_400_naming_its_field(client, vendor_key, query, field):
    refused(client.get(f"{API}/jobs", query_string=query, headers=vendor_key("acme")), 400, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "failed"}, "status"),  # misspelt: must not widen the action to every job
        ({}, "filter"),
        ({"dry_run": True}, "filter"),
        ({"state": "failed", "dry_run": "yes"}, "dry_run"),
        ({"state": "failed", "limit": 0}, "limit"),
        ({"state": 3}, "state"),
        ([], "body"),
    ],
)
def test_a_bad_bulk_body_is_a_400_naming_its_field(client, vendor_key, body, field):
    answer = client.post(f"{API}/jobs/retry", json=body, headers=vendor_key("acme"))
    refused(answer, 400, field)


def test_the_page_listing_is_kept_and_goes_on_by_cursor(client, vendor_key, urls):
    acme = vendor_key("acme")
    made = [enqueue(client, acme, f"r-{i}", urls["good"]) for i in range(5)]
    first = client.get(f"{API}/jobs", query_string={"per_page": 2}, headers=acme).json
    assert (first["total"], first["pages"], first["page"]) == (5, 3, 1)
    rest = client.get(f"{API}/jobs", query_string={"cursor": first["next_cursor"]}, headers=acme).json
    assert ids(first["jobs"]) + ids(rest["jobs"]) == made[::-1] and rest["next_cursor"] is None


def test_jobs_from_before_the_index_are_found_after_a_reindex(
    client, vendor_key, urls, redis_conn, cli, work
):
    acme = vendor_key("acme")
    good = [enqueue(client, acme, f"old-{i}", urls["good"]) for i in range(3)]
    bad = enqueue(client, acme, "old-bad", urls["bad"])
    work()
    # As enqueued before the index: only the vendor's own set of jobs.
    keys = [k for k in redis_conn.scan_iter("imgproc:jx:*")]
    redis_conn.delete(*keys)
    assert not search(client, acme, state="finished")
    assert len(search(client, acme)) == 4  # the listing without a filter reads the vendor's set as before
    code, out, _ = cli("jobs", "reindex")
    assert code == 0 and "4 jobs" in out
    assert set(ids(search(client, acme, state="finished"))) == set(good)
    assert ids(search(client, acme, state="failed", record_id="old-*")) == [bad]


def test_a_failure_no_move_wrote_is_found_by_its_state(client, vendor_key, urls, redis_conn, work, settings):
    """A dead worker's job failed by rq's sweep ends without the worker's end: a search syncs with rq."""
    acme = vendor_key("acme")
    job_id = enqueue(client, acme, "lost", urls["bad"])
    work()
    job = Job.fetch(job_id, connection=redis_conn)
    with redis_conn.pipeline() as pipe:  # as if the end's move never happened
        jobindex.move(pipe, job, settings.failure_ttl, "queued")
        pipe.execute()
    assert redis_conn.zscore(jobindex.time_keys("acme", "failed", "process-image")[0], job_id) is None
    assert ids(search(client, acme, state="failed")) == [job_id]
    assert redis_conn.zscore(KEY_VENDOR_JOBS.format("acme"), job_id) is not None


def test_the_cli_finds_and_acts(cli, client, vendor_key, urls, settings):
    acme = vendor_key("acme")
    made = [enqueue(client, acme, f"c-{i}", urls["good"]) for i in range(3)]
    code, out, _ = cli("jobs", "find", "--vendor", "acme", "--record-id", "c-*", "--json")
    assert code == 0 and ids(json.loads(out)["jobs"]) == made[::-1]
    code, out, _ = cli("jobs", "cancel", "--vendor", "acme", "--state", "queued", "--dry-run")
    assert code == 0 and "3 jobs would be cancelled" in out
    assert {j["state"] for j in search(client, acme)} == {"queued"}
    code, out, _ = cli("jobs", "cancel", "--vendor", "acme", "--state", "queued")
    assert code == 0 and "3 jobs cancelled" in out
    assert {j["state"] for j in search(client, acme)} == {"canceled"}
    code, _, err = cli("jobs", "cancel", "--state", "lost")
    assert code == 2 and "state" in err


def test_a_vendors_bulk_retry_uses_its_limits(settings, redis_conn, urls, work):
    from imgproc.api import create_app
    from tests.conftest import close_app

    app = create_app(settings.replace(limit_image="6 per minute"))
    try:
        client = app.test_client()
        acme = {"X-API-Key": app.extensions["imgproc"].vendors.add("acme")}
        failed = [enqueue(client, acme, f"bad-{i}", urls["bad"]) for i in range(4)]  # 4 of the 6 used
        work()
        body = {"state": "failed"}
        dry = client.post(f"{API}/jobs/retry", json={**body, "dry_run": True}, headers=acme)
        assert dry.json["count"] == 4  # a dry run costs nothing but the request
        over = client.post(f"{API}/jobs/retry", json=body, headers=acme)
        assert over.status_code == 429 and "Retry-After" in over.headers, over.json
        assert set(ids(search(client, acme, state="failed"))) == set(failed)  # nothing retried
        done = client.post(f"{API}/jobs/retry", json={**body, "limit": 2}, headers=acme)
        assert done.status_code == 200 and done.json["count"] == 2 and done.json["remaining"] == 2
        assert done.headers["X-RateLimit-Remaining"] == "0"
        assert len(search(client, acme, state="queued")) == 2
    finally:
        close_app(app)


def test_record_entries_of_jobs_gone_are_pruned_by_later_enqueues(client, vendor_key, urls, redis_conn):
    acme = vendor_key("acme")
    gone = [enqueue(client, acme, f"gone-{i}", urls["good"]) for i in range(5)]
    redis_conn.delete(*(Job.key_for(job_id) for job_id in gone))  # as when their results expire
    kept = [enqueue(client, acme, f"kept-{i}", urls["good"]) for i in range(3)]  # each checks 3 entries
    for scope in ("acme", jobindex.ALL):
        entries = redis_conn.zrange(jobindex.KEY_RECORDS.format(scope=scope), 0, -1)
        assert sorted(e.split(b"\x00")[1].decode() for e in entries) == sorted(kept)


def test_a_purged_vendors_index_goes_with_it(client, vendor_key, urls, redis_conn):
    """``jobindex.purge``, for ``imgproc vendors purge``: nothing of acme's stays, beta's stays whole."""
    acme, beta, ops = vendor_key("acme"), vendor_key("beta"), vendor_key("ops", operator=True)
    made = [(enqueue(client, acme, f"same-{i}", urls["good"]), f"same-{i}") for i in range(3)]
    theirs = enqueue(client, beta, "same-0", urls["good"])
    with redis_conn.pipeline() as pipe:
        jobindex.purge(pipe, "acme", made)
        pipe.execute()
    assert not [key for key in redis_conn.scan_iter("imgproc:jx:*") if b"acme" in key]
    assert ids(search(client, ops, record_id="same-*")) == [theirs]
    assert ids(search(client, ops, state="queued")) == [theirs]
