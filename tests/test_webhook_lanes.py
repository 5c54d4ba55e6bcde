"""Webhook deliveries wait in their vendor's lane, their retries too (issue 22, finding 6).

The measurement with worker processes and a receiver that times out is
``tests/faults/test_webhook_isolation.py``; here, where each delivery goes.
"""

from __future__ import annotations

import datetime as dt

from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from imgproc.jobtypes import QUEUE_WEBHOOKS
from imgproc.queueing.deliveries import enqueue_delivery
from imgproc.queueing.fairshare import KEY_LANE, for_queue
from imgproc.worker.scheduler import SpawnedScheduler


def test_deliveries_and_their_retries_wait_in_their_vendors_lane(settings, redis_conn):
    queue = Queue(QUEUE_WEBHOOKS, connection=redis_conn)
    lane = KEY_LANE.format(queue=QUEUE_WEBHOOKS, vendor="dead")
    dead = [enqueue_delivery(redis_conn, settings, f"msg_d{i}", "dead").id for i in range(3)]
    other = enqueue_delivery(redis_conn, settings, "msg_o", "other").id
    # One of each vendor's at a time (IMGPROC_WEBHOOK_VENDOR_CONCURRENCY=1); before: all 4 in the queue.
    assert queue.job_ids == [dead[0], other]
    assert redis_conn.lrange(lane, 0, -1) == [d.encode() for d in dead[1:]]

    # The first attempt timed out: rq scheduled its retry (due now), and the worker let its slot go.
    first = Job.fetch(dead[0], connection=redis_conn)
    queue.remove(first.id)
    ScheduledJobRegistry(queue=queue).schedule(first, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    for_queue(redis_conn, settings, QUEUE_WEBHOOKS).release(QUEUE_WEBHOOKS, "dead", first.id)
    scheduler = SpawnedScheduler([queue], connection=redis_conn, settings=settings)
    scheduler.acquire_locks()
    try:
        scheduler.enqueue_scheduled_jobs()
    finally:
        scheduler.release_locks()
    # The retry went to the end of its vendor's lane, not into the queue: the vendor's next one went in.
    assert queue.job_ids == [other, dead[1]]
    assert redis_conn.lrange(lane, 0, -1) == [dead[2].encode(), first.id.encode()]
    assert first.get_status(refresh=True) == "queued"
