"""The worker: one process that loads its models once and runs jobs without forking.

main.py       ``python worker.py``: arguments, start-up, the loop that outlives Redis outages
process.py    ImgprocWorker: rq's SimpleWorker with fair-share feeding, heartbeats, fewer round trips
runtime.py    Runtime: what a job gets from its process (models, fetcher, storage, records)
tasks.py      run: the one RQ job function, for every job type
failures.py   the failure policy: typed errors, retried or not
scheduler.py  rq's scheduler, spawned rather than forked
pool.py       ``imgproc workers N``: N worker processes, replaced when they exit
"""

from .main import main
from .process import ImgprocWorker, build_worker
from .runtime import Runtime

__all__ = ["ImgprocWorker", "Runtime", "build_worker", "main"]
