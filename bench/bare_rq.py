"""The baselines of the light jobs: bare RQ, 2 non-forking ``rq worker``s, no-ops or the same work."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.jobs import last_ended
from imgproc.config import ROOT
from imgproc.testing import StackError, wait_for

#: Each baseline's queue: ``bench-<function>``, so that its registries count its own jobs only.
QUEUE = "bench-{}"


def bare_rq(b, count: int, n: int = 2, job: str = "bench.noop.noop", args: tuple = ()) -> dict:
    """Jobs per second of ``n`` SimpleWorkers on ``count`` jobs ``job(*args)``, enqueue to the last finished.

    The workers are started and registered before the clock starts (as
    imgproc's are), so their boot is not counted; the jobs are enqueued in
    one pipeline, like imgproc's bulk.
    """
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry
    from rq.worker import Worker

    rq = str(Path(sys.executable).parent / "rq")
    name = QUEUE.format(job.rsplit(".", 1)[-1])
    procs = [
        b.stack.spawn(
            f"rq-noop-{i}",
            [
                rq,
                "worker",
                "-w",
                "rq.worker.SimpleWorker",
                "-u",
                b.stack.redis_url,
                "--path",
                str(ROOT),
                "-n",
                f"noop-{i}-{time.monotonic_ns()}",
                name,
            ],
            b.stack.env,
        )
        for i in range(n)
    ]
    conn = b.stack.redis()
    try:
        queue = Queue(name, connection=conn)
        wait_for(lambda: Worker.count(connection=conn, queue=queue) >= n, 60, f"{n} bare rq workers", procs)
        finished, failed = FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)
        started = time.time()
        done = queue.enqueue_many([Queue.prepare_data(job, args=args) for _ in range(count)])
        wait_for(
            lambda: finished.count >= count or failed.count,
            300,
            f"{count} {job} jobs",
            procs,
            interval=b.args.bulk_poll,
        )
        seconds = last_ended(conn, [j.id for j in done]) - started  # measured like imgproc's bulks
        if failed.count:
            raise StackError(f"{failed.count} {job} jobs failed; see {procs[0].log_path}")
    finally:
        b.stack.stop(procs)
        conn.close()
    b.log(
        f"bare rq: {count} {job} jobs in {seconds:.2f} s = {count / seconds:.0f} jobs/s ({n} SimpleWorkers)"
    )
    return {
        "jobs": count,
        "workers": n,
        "worker_class": "rq.worker.SimpleWorker",
        "job": job,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(count / seconds, 1),
    }
