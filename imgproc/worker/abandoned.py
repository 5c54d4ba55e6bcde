"""Jobs whose worker died mid-job: found within seconds of their last heartbeat and queued again at once.

rq finds such a job in its registries' sweep (``clean_registries``, every
``IMGPROC_MAINTENANCE_INTERVAL``) and treats it as a failure of the job: the
retry waits out the job's backoff in the scheduled registry, and the
scheduler that would enqueue it may have been the dead worker's own, whose
lock outlives it by a minute. Measured with the defaults (heartbeat 5 s,
sweep 10 s, backoff 5 s), SIGKILL mid-inference beside a second worker: the
job started again 62 s after the kill. A dead worker is not the job's fault,
so ``requeue_abandoned`` puts the job back at the front of its queue with no
backoff (one attempt used, as rq counts it), and every worker runs it while
idle and from its heartbeat thread while busy, every heartbeat interval.

A live worker's running job is never taken: its heartbeat thread pushes the
job's expiry ``3 x IMGPROC_HEARTBEAT_INTERVAL`` ahead every interval, also
while the job's own thread is busy in a model (ONNX Runtime releases the GIL).
Of two workers that find the same job, only the one whose ZREM removes its
registry entry requeues it. A job with no attempt left is left to rq's sweep,
which fails it as ``worker_lost`` as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import redis
from rq import Queue
from rq.exceptions import AbandonedJobError, NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.utils import current_timestamp

from imgproc.queueing.state import JobState

log = logging.getLogger("imgproc.worker")

Handler = Callable[..., object]


def requeue_abandoned(
    queues: Iterable[Queue], handlers: Iterable[Handler] = (), until: float | None = None
) -> list[Job]:
    """Queue again, at the front, every job of ``queues`` whose worker stopped beating; the jobs requeued.

    ``handlers``: rq's exception handlers (``record_error`` stores ``worker_lost`` on the job);
    ``until``: the expiry (a Unix time, now by default) up to which entries count as abandoned.
    """
    requeued = []
    until = current_timestamp() if until is None else until
    for queue in queues:
        registry = StartedJobRegistry(queue=queue)
        conn = queue.connection
        for entry in conn.zrangebyscore(registry.key, 0, until):
            job_id = registry.parse_job_id(entry)
            try:
                job = Job.fetch(job_id, connection=conn, serializer=queue.serializer)
            except NoSuchJobError:
                continue  # expired: rq's sweep drops the entry
            if not job.retries_left or job.retries_left <= 0:
                continue  # its last attempt: rq's sweep fails it
            if not conn.zrem(registry.key, entry):
                continue  # another worker took it first
            for handler in handlers:
                handler(job, AbandonedJobError, AbandonedJobError(), None)
            # The lost attempt counts, also when it died before saving its first stage.
            JobState.of(job).count_lost_attempt(job.retries_left)
            job.retries_left -= 1
            with conn.pipeline() as pipe:
                queue.enqueue_job(job, pipeline=pipe, at_front=True)  # saves the job: retries_left too
                pipe.execute()
            log.warning(
                "job %s: its worker %s stopped mid-job; queued again at once (%d attempt(s) left)",
                job.id,
                job.worker_name,
                job.retries_left,
            )
            requeued.append(job)
    return requeued


def requeue_safely(queues: Iterable[Queue], handlers: Iterable[Handler] = ()) -> list[Job]:
    """``requeue_abandoned``, never raising for Redis: the next turn tries again."""
    try:
        return requeue_abandoned(queues, handlers)
    except redis.RedisError as exc:
        log.warning("could not look for abandoned jobs: %s", exc)
        return []
