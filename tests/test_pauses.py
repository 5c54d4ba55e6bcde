"""Pause and resume a queue or a vendor: jobs wait in their lanes, others run, order kept on resume."""

import time

from rq import Queue
from rq.job import Job

from imgproc.jobtypes import QUEUE_LIGHT
from imgproc.queueing import JobQueue
from imgproc.queueing.fairshare import forget
from imgproc.queueing.pauses import Pauses
from tests.test_fairshare import light_url, specs, started, wait_for, workers

PAUSE, RESUME, PAUSES = "/api/image-queue/pause", "/api/image-queue/resume", "/api/image-queue/pauses"
LIGHT_JOB = {"record_id": "r", "image_url": "http://127.0.0.1:1/x.jpg", "options": {"resize": [64, 64]}}


def fed(redis_conn) -> list[str]:
    """The vendors of the jobs in the light queue, in order."""
    queue = Queue(QUEUE_LIGHT, connection=redis_conn)
    return [Job.fetch(i, connection=redis_conn).meta["vendor"] for i in queue.job_ids]


def test_a_paused_vendors_fed_jobs_go_back_and_the_feed_goes_past_it(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=4))
    pauses = Pauses.of(redis_conn, settings.replace(vendor_concurrency=4))
    _, a = jobs.enqueue(specs("vendor-a", 5), batch=True)
    assert fed(redis_conn) == ["vendor-a", "vendor-a"]
    assert pauses.pause("vendor", "vendor-a") == 2  # both back at the front of its lane
    assert fed(redis_conn) == []
    _, b = jobs.enqueue(specs("vendor-b", 3), batch=True)
    _, more = jobs.enqueue(specs("vendor-a", 2), batch=True)  # accepted while paused: into its lane
    assert fed(redis_conn) == ["vendor-b", "vendor-b"]
    assert jobs.job_view(a[0])["state"] == "paused" and jobs.job_view(b[2])["state"] == "queued"
    assert jobs.stats("", operator=True)["paused"] == {"queues": [], "vendors": ["vendor-a"]}
    assert jobs.stats("vendor-b")["paused"] == {"queues": [], "vendors": []}  # not another's
    assert jobs.stats("vendor-a")["queues"][QUEUE_LIGHT]["queued"] == 7  # counted as waiting
    assert pauses.resume("vendor", "vendor-a") is True
    queue = Queue(QUEUE_LIGHT, connection=redis_conn)
    order = []
    for _ in range(10):  # play the workers: A's jobs in the order they were sent, B's last one among them
        jobs.fair.feed(queue)
        job = Job.fetch(redis_conn.lpop(queue.key).decode(), connection=redis_conn)
        job.set_status("finished")
        jobs.fair.release(QUEUE_LIGHT, job.meta["vendor"], job.id)
        order.append(job.id)
    assert [i for i in order if i in {j.id for j in a + more}] == [j.id for j in a + more]
    assert pauses.resume("vendor", "vendor-a") is False  # twice: nothing more to do


def test_a_paused_queue_is_not_fed_and_keeps_its_order(settings, redis_conn):
    jobs = JobQueue(redis_conn, settings)
    pauses = Pauses.of(redis_conn, settings)
    _, a = jobs.enqueue(specs("vendor-a", 3), batch=True)
    _, b = jobs.enqueue(specs("vendor-b", 3), batch=True)
    queue = Queue(QUEUE_LIGHT, connection=redis_conn)
    before = queue.job_ids
    assert pauses.pause("queue", QUEUE_LIGHT) == 2
    assert queue.count == 0 and jobs.fair.feed(queue) == 0
    assert {jobs.job_view(j)["state"] for j in a + b} == {"paused"}
    assert jobs.batch_view("vendor-a", jobs.job_view(a[0])["batch_id"])["jobs"][0]["state"] == "paused"
    assert jobs.stats("vendor-a")["queues"][QUEUE_LIGHT]["paused"] is True
    assert jobs.stats("vendor-a")["queues"]["bg-removal"]["paused"] is False
    assert pauses.listing()["queues"][0]["queue"] == QUEUE_LIGHT
    pauses.resume("queue", QUEUE_LIGHT)
    assert queue.job_ids == before  # the same two again, in their order
    assert jobs.job_view(a[2])["state"] == "queued"


def test_operators_only_and_bad_bodies_are_400_naming_the_field(client, vendor_key):
    ops, acme = vendor_key("ops", operator=True), vendor_key("acme")
    for method, url in (("post", PAUSE), ("post", RESUME), ("get", PAUSES)):
        answer = getattr(client, method)(url, json={"vendor": "acme"}, headers=acme)
        assert answer.status_code == 403 and answer.json["error"]["code"] == "forbidden"
    for body, field in (
        ("not json", "queue"),
        ({}, "queue"),
        ({"queue": "bg-removal", "vendor": "acme"}, "queue"),
        ({"vendors": "acme"}, "vendors"),
        ({"queue": "webhooks"}, "queue"),
        ({"queue": ["bg-removal"]}, "queue"),
        ({"vendor": ""}, "vendor"),
    ):
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        answer = client.post(PAUSE, headers=ops, **kwargs)
        assert answer.status_code == 400, body
        assert answer.json["error"]["code"] == "invalid_request"
        assert answer.json["error"]["details"]["field"] == field, body
    answer = client.post(PAUSE, json={"vendor": "nobody"}, headers=ops)
    assert answer.status_code == 404 and answer.json["error"]["code"] == "not_found"
    assert client.get(PAUSES, headers=ops).json == {"queues": [], "vendors": []}  # nothing was paused


def test_the_api_pauses_audits_and_a_paused_vendors_enqueue_is_accepted(client, vendor_key):
    ops, acme = vendor_key("ops", operator=True), vendor_key("acme")
    answer = client.post(PAUSE, json={"vendor": "acme"}, headers=ops)
    assert answer.status_code == 200 and answer.json == {"vendor": "acme", "paused": True, "held_back": 0}
    sent = client.post("/api/image-queue/process-image-queue", json=LIGHT_JOB, headers=acme)
    assert sent.status_code == 202
    assert client.get(sent.json["status_url"], headers=acme).json["state"] == "paused"
    assert client.get("/api/image-queue/queue-stats", headers=acme).json["paused"]["vendors"] == ["acme"]
    assert [p["vendor"] for p in client.get(PAUSES, headers=ops).json["vendors"]] == ["acme"]
    metrics = client.get("/metrics").text
    assert 'imgproc_paused{kind="vendor"} 1.0' in metrics and 'imgproc_paused{kind="queue"} 0.0' in metrics
    answer = client.post(RESUME, json={"vendor": "acme"}, headers=ops)
    assert answer.json == {"vendor": "acme", "paused": False, "was_paused": True}
    assert client.get(sent.json["status_url"], headers=acme).json["state"] == "queued"
    entries = client.get("/api/image-queue/audit", headers=ops).json["entries"]
    assert [(e["action"], e["target"]) for e in entries[:2]] == [
        ("vendor.resume", "vendor:acme"),
        ("vendor.pause", "vendor:acme"),
    ]


def test_the_cli_pauses_lists_and_resumes_and_audits(cli):
    assert cli("vendors", "add", "acme")[0] == 0
    code, out, _ = cli("pause", "--queue", "bg-removal")
    assert code == 0 and "queue bg-removal paused" in out
    assert cli("pause", "--vendor", "acme")[0] == 0
    code, out, _ = cli("pauses")
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "name", "since"]
    assert [line.split()[:2] for line in lines[1:]] == [["queue", "bg-removal"], ["vendor", "acme"]]
    code, _, err = cli("pause", "--vendor", "nobody")
    assert code == 1 and "no vendor 'nobody'" in err
    code, out, _ = cli("resume", "--queue", "bg-removal")
    assert code == 0 and "queue bg-removal resumed" in out
    code, out, _ = cli("resume", "--queue", "bg-removal")
    assert code == 0 and "was not paused" in out
    code, out, _ = cli("audit", "--json", "--target", "queue:bg-removal")
    assert out.count('"queue.pause"') == 1 and out.count('"queue.resume"') == 2
    assert cli("resume", "--vendor", "acme")[0] == 0
    assert cli("pauses")[1].strip() == "nothing is paused"


def test_a_vendor_paused_mid_run_waits_while_another_runs_then_resumes_in_order(
    settings, redis_conn, photo_server, tmp_path, client, vendor_key
):
    """One worker process: A's jobs stop starting at the pause, B's run meanwhile, A's go on in order."""
    url = light_url(photo_server)
    ops = vendor_key("ops", operator=True)
    vendor_key("vendor-a")
    jobs = JobQueue(redis_conn, settings)
    a = jobs.enqueue(specs("vendor-a", 60, url), batch=True)[1]
    b = jobs.enqueue(specs("vendor-b", 60, url), batch=True)[1]
    with workers(settings, tmp_path, 1) as procs:
        wait_for(redis_conn, a, lambda states: states.count("finished") >= 3, procs)
        answer = client.post(PAUSE, json={"vendor": "vendor-a"}, headers=ops)
        assert answer.status_code == 200
        paused_at = time.time()
        wait_for(redis_conn, b, lambda states: states.count("finished") == 60, procs)
        left = [j for j in a if j.get_status(refresh=True) == "queued"]
        assert left and {jobs.job_view(j)["state"] for j in left} == {"paused"}
        during = [at for at, _ in started(redis_conn, a) if at.timestamp() > paused_at]
        assert len(during) <= 1, during  # at most the one the worker had taken as the pause came
        assert client.post(RESUME, json={"vendor": "vendor-a"}, headers=ops).status_code == 200
        wait_for(redis_conn, a, lambda states: states.count("finished") == 60, procs)
    starts = {j.id: Job.fetch(j.id, connection=redis_conn).started_at for j in a}
    assert sorted(a, key=lambda j: starts[j.id]) == a  # one worker: its order is the lane's
    print(f"vendor-a: {len(left)} of 60 waited paused while vendor-b's ran; {len(during)} started after")


def test_a_queue_paused_mid_run_starts_nothing_then_everything_in_order(
    settings, redis_conn, photo_server, tmp_path, cli
):
    url = light_url(photo_server)
    jobs = JobQueue(redis_conn, settings)
    a = jobs.enqueue(specs("vendor-a", 60, url), batch=True)[1]
    with workers(settings, tmp_path, 1) as procs:
        wait_for(redis_conn, a, lambda states: states.count("finished") >= 3, procs)
        assert cli("pause", "--queue", QUEUE_LIGHT)[0] == 0
        paused_at = time.time()
        late = jobs.enqueue(specs("vendor-b", 2, url), batch=True)[1]
        time.sleep(2)  # a worker would have run ~ all of them by now
        count = sum(j.get_status(refresh=True) == "finished" for j in a)
        assert count < 60 and {jobs.job_view(j)["state"] for j in late} == {"paused"}
        assert len([at for at, _ in started(redis_conn, a + late) if at.timestamp() > paused_at]) <= 1
        assert cli("resume", "--queue", QUEUE_LIGHT)[0] == 0
        wait_for(redis_conn, a + late, lambda states: set(states) == {"finished"}, procs)
    starts = {j.id: Job.fetch(j.id, connection=redis_conn).started_at for j in a}
    assert sorted(a, key=lambda j: starts[j.id]) == a


def test_a_forgotten_vendor_leaves_no_pause_nor_place_behind(settings, redis_conn):
    """``forget`` (for a purge): a vendor of the same name later starts afresh, neither paused nor held."""
    jobs = JobQueue(redis_conn, settings.replace(vendor_concurrency=1))
    Pauses.of(redis_conn, settings).pause("vendor", "vendor-a")
    jobs.enqueue(specs("vendor-a", 3), batch=True)
    jobs.fair.feed(Queue(QUEUE_LIGHT, connection=redis_conn))  # paused: nothing is fed
    assert jobs.fair.vendors(QUEUE_LIGHT) == ["vendor-a"] and fed(redis_conn) == []
    with redis_conn.pipeline() as pipe:
        for queue in jobs.fair.queues:
            forget(pipe, queue, "vendor-a")
        pipe.execute()
    assert jobs.fair.vendors(QUEUE_LIGHT) == [] and Pauses.of(redis_conn, settings).listing()["vendors"] == []
    jobs.enqueue(specs("vendor-a", 1), batch=True)
    assert fed(redis_conn) == ["vendor-a"]


def test_a_retry_that_falls_due_while_its_vendor_is_paused_waits_paused(
    settings, redis_conn, client, vendor_key, photo_server, photos
):
    """rq's scheduler would push a due retry straight into its queue; imgproc's puts it in its lane."""
    import time

    from rq.registry import ScheduledJobRegistry

    from imgproc.jobtypes import QUEUE_LIGHT, QUEUES
    from imgproc.worker import build_worker
    from imgproc.worker.scheduler import SpawnedScheduler
    from tests.conftest import worker_runtime

    settings = settings.replace(max_attempts=2, retry_backoff=1.0)
    acme, ops = vendor_key("acme"), vendor_key("ops", operator=True)
    photo_server.serve("/coffee.jpg", photos["coffee"])
    photo_server.fail_next("/coffee.jpg", 1)  # one 500: a transient failure, retried after 1 s
    job_id = client.post(
        "/api/image-queue/process-image-queue",
        json={"record_id": "r", "image_url": photo_server.url("/coffee.jpg")},
        headers=acme,
    ).json["job_id"]
    with worker_runtime(settings, redis_conn) as runtime:
        build_worker(settings, QUEUES, runtime=runtime).work(burst=True)
    assert job_id in ScheduledJobRegistry(QUEUE_LIGHT, connection=redis_conn).get_job_ids()
    assert client.post("/api/image-queue/pause", json={"vendor": "acme"}, headers=ops).status_code == 200
    time.sleep(1.2)  # the retry is due
    scheduler = SpawnedScheduler(QUEUES, connection=redis_conn, settings=settings)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    assert job_id not in ScheduledJobRegistry(QUEUE_LIGHT, connection=redis_conn).get_job_ids()
    assert job_id not in Queue(QUEUE_LIGHT, connection=redis_conn).get_job_ids()  # not where workers look
    assert client.get(f"/api/image-queue/job/{job_id}", headers=acme).json["state"] == "paused"
    assert client.post("/api/image-queue/resume", json={"vendor": "acme"}, headers=ops).status_code == 200
    with worker_runtime(settings, redis_conn) as runtime:
        build_worker(settings, QUEUES, runtime=runtime).work(burst=True)
    assert client.get(f"/api/image-queue/job/{job_id}", headers=acme).json["state"] == "finished"
