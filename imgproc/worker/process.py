"""``ImgprocWorker``: rq's non-forking worker, with fair-share feeding, heartbeats and fewer round trips.

rq's default Worker forks a child per job; an ONNX Runtime session used across
a fork loses its thread pool (measured: 5.4 s instead of 3.2 s per image) and
the fork costs ~23 ms per job. ``ImgprocWorker`` is rq's ``SimpleWorker``
(no fork), and the number of worker processes is the unit of scaling.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import redis
from rq import Queue, worker_registration
from rq.executions import Execution
from rq.registry import DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.utils import current_timestamp, now
from rq.worker import SimpleWorker, WorkerStatus

from imgproc.config import Settings
from imgproc.jobtypes import JOB_TYPES, QUEUE_WEBHOOKS
from imgproc.queueing import events, fairshare, placement
from imgproc.queueing.state import JobState

from . import abandoned
from .failures import record_error
from .outcomes import JobEnds
from .runtime import Runtime
from .scheduler import SpawnedScheduler
from .stages import ImgprocJob, Stages

log = logging.getLogger("imgproc.worker")

#: Most seconds between two tries to reach a lost Redis: a host back on the network works again within it.
RECONNECT_MAX = 10


class ImgprocWorker(JobEnds, SimpleWorker):
    """A non-forking rq worker that hands every job this process's ``Runtime``.

    Before each dequeue it feeds its queues from the vendors' lanes
    (``imgproc.fairshare``), and it never blocks on Redis longer than
    ``FEED_INTERVAL`` so that jobs held back by a vendor's cap move on even
    when no new job arrives. While a job runs, a thread keeps the worker's
    and the job's heartbeats (rq's SimpleWorker has none until the job ends),
    so a killed worker's job is found abandoned within three heartbeats.
    """

    FEED_INTERVAL = 5
    job_class = ImgprocJob
    # rq logs two more lines per job (its description, its result's lifetime); at hundreds of
    # light jobs a second that is a measurable share of a worker's time, and "Job OK" stays.
    log_result_lifespan = False
    log_job_description = False

    def __init__(self, *args, runtime: Runtime, **kwargs):
        settings = runtime.settings
        kwargs.setdefault("job_monitoring_interval", settings.heartbeat_interval)
        kwargs.setdefault("maintenance_interval", settings.maintenance_interval)
        kwargs.setdefault("worker_ttl", max(30, 3 * settings.heartbeat_interval, 2 * self.FEED_INTERVAL))
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self.stopping = False
        #: The fair share in front of each of its queues (the webhooks queue's counts deliveries apart).
        conn = self.connection
        self.fairs = {name: fairshare.for_queue(conn, settings, name) for name in self.queue_names()}
        self.push_exc_handler(record_error)
        self._beaten = 0.0
        self._suspension_checked = 0.0
        self._swept = 0.0
        #: The name of a scheduler this process ran before losing Redis (see ``succeed``).
        self.scheduler_name: str | None = None
        #: Queues whose retries this worker's scheduler moves beside its own: the webhooks queue, which
        #: the image worker's delivery thread serves (``imgproc.worker.delivery``) with no scheduler.
        self.also_scheduled: list[Queue] = []
        if settings.webhook_thread and QUEUE_WEBHOOKS not in self.queue_names():
            self.also_scheduled = [Queue(QUEUE_WEBHOOKS, connection=self.connection)]

    def serialize(self) -> dict:
        # Written with rq's record of the worker at its birth, and gone with it (imgproc.queueing.placement).
        runtime = self.runtime
        fields = placement.fields(runtime.provider, runtime.settings.precision, runtime.settings.batch)
        return {**super().serialize(), **fields}

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        # rq beats three times per job on its own (after the job, before and after each
        # dequeue), each an HSET and an EXPIRE round trip, to extend a key that lives for
        # worker_ttl + 60 s: one beat a second is plenty.
        if pipeline is None and timeout is None:
            if time.monotonic() - self._beaten < 1.0:
                return
            self._beaten = time.monotonic()
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline=None) -> None:
        # rq sets "idle" twice between two jobs (after one, before the next dequeue), and the first was
        # written with the job's end (JobEnds.handle_job_success): in memory only, no round trip.
        if pipeline is None and state == WorkerStatus.IDLE and self.idle_written:
            self.idle_written = False
            self._state = state
            return
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = "%H:%M:%S",
        log_format: str = "%(asctime)s %(message)s",
    ) -> None:
        # rq's own, with a scheduler that is spawned rather than forked (see SpawnedScheduler).
        self.scheduler = SpawnedScheduler(
            self.queues + self.also_scheduled,
            connection=self.connection,
            settings=self.runtime.settings,
            name=self.scheduler_name,
            serializer=self.serializer,
            logging_level=logging_level or self.log.level,
            date_format=date_format,
            log_format=log_format,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def succeed(self, lost: ImgprocWorker) -> None:
        """Take over from ``lost``, this process's worker that lost Redis: its scheduler's lock too.

        Its scheduler died with the connection and left its lock in Redis for a minute; a new name
        would wait that long before anyone enqueues the retries scheduled meanwhile.
        """
        old = lost.scheduler
        if old is None:
            return
        process = getattr(old, "_process", None)
        if process is not None and process.is_alive():
            process.terminate()  # never two schedulers under one name
            process.join(5)
        self.scheduler_name = old.name

    def work(self, *args, **kwargs) -> bool:
        # rq installs its SIGTERM/SIGINT handlers only after starting the scheduler (a spawned process:
        # seconds on a busy host), when the worker is already registered and its readiness file written:
        # a stop asked for in that window killed it mid-start. Until then, a stop is only noted, and
        # rq's loop ends at its first turn. Slot threads get no signals (imgproc.worker.slots).
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._stop_before_start)
        return super().work(*args, **kwargs)

    def _stop_before_start(self, signum, frame) -> None:
        log.info("stop requested while starting (signal %d): stopping before the first job", signum)
        self.stopping = True
        self._stop_requested = True

    def request_stop(self, signum, frame) -> None:
        self.stopping = True  # rq only records a stop asked for while busy
        super().request_stop(signum, frame)

    def stop_scheduler(self) -> None:
        super().stop_scheduler()
        # A scheduler stopped while its interpreter was still importing (seconds on a busy host) never
        # reached rq's loop, which releases the locks this process took for it: they kept every other
        # worker's scheduler, a restarted one's too, off its queues for interval + 60 s.
        process, scheduler = self.scheduler._process, self.scheduler
        if process is not None and process.exitcode != 0 and scheduler.acquired_locks:
            try:
                scheduler.release_locks()  # only the locks still under its name
            except redis.RedisError as exc:
                log.warning("scheduler locks left to expire: %s", exc)
            finally:
                scheduler.connection.connection_pool.disconnect()

    def unsubscribe(self) -> None:
        # rq sends UNSUBSCRIBE, whose reply wakes its pubsub thread, and only then clears the thread's
        # flag in stop(), which redis-py 8 follows with a join. A thread that read the reply first (a
        # busy host runs it before this one) waited for a new subscription for rq's sleep_time, 60 s,
        # and the stopping worker with it: 1 stop in 3 mid-job at load 5.6 on 2 cores exited after 69 s
        # instead of 1-10 (4 unsubscribes in 100 at load 2.4 took 60 s; 0 in 1,000 with the flag cleared
        # first). Cleared first, the reply ends the thread's loop.
        if self.pubsub_thread is not None:
            self.pubsub_thread._running.clear()  # redis-py's PubSubWorkerThread.stop(), without its join
        super().unsubscribe()

    def get_heartbeat_ttl(self, job) -> int:
        return 3 * self.job_monitoring_interval

    def prepare_execution(self, job) -> None:
        # rq's (the job's execution record, the worker busy) goes into prepare_job_execution's transaction
        # just after: rq runs nothing between the two, and one round trip per job less (see there). Busy
        # in memory from here, as rq's is: a stop asked for from now on waits for the job's end.
        self.execution = None
        self._state = WorkerStatus.BUSY

    def prepare_job_execution(self, job, remove_from_intermediate_queue: bool = False) -> None:
        # rq's prepare_execution and prepare_job_execution in one transaction: the execution record,
        # the worker busy on the job, both heartbeats, the job started (with its PERSIST, ImgprocJob),
        # out of the intermediate queue. Two round trips were 10% of a light job's worker time.
        with self.connection.pipeline() as pipe:
            ttl = self.get_heartbeat_ttl(job)
            self.execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            self.idle_written = False
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.set_current_job_id(job.id, pipeline=pipe)
            self.set_current_job_working_time(0, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            if remove_from_intermediate_queue:
                pipe.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
            pipe.execute()

    def execute_job(self, job, queue) -> None:
        self.runtime.follow_host()  # before the job: its sessions may be rebuilt for a new count
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop), name="heartbeat", daemon=True)
        beat.start()
        try:
            super().execute_job(job, queue)
        finally:
            stop.set()
            beat.join()

    def _beat(self, job, stop: threading.Event) -> None:
        while not stop.wait(self.job_monitoring_interval):
            try:
                self.maintain_heartbeats(job)
                self.runtime.follow_host(retune=False)  # a long job keeps its place among the host's
                self.sweep_abandoned()  # a busy worker still finds a dead one's job
            except (redis.RedisError, AttributeError) as exc:  # Redis away, or the job ended meanwhile
                log.debug("heartbeat skipped: %s", exc)

    def perform_job(self, job: ImgprocJob, queue) -> bool:
        image_job = JobState.of(job).type in JOB_TYPES
        if image_job:
            job.stages = self.running = Stages(job, self.runtime.settings)
        try:
            with self.runtime.serving():  # read by imgproc.worker.tasks.run and imgproc.worker.webhooks
                done = super().perform_job(job, queue)
                if image_job:
                    self.ended(job)
                elif job.origin == QUEUE_WEBHOOKS:
                    self.release(job)  # the vendor's next delivery may go
        finally:
            job.stages = self.running = None
            if self._stopped_job_id == job.id:  # a stop that came after its last stage: it finished
                self._stopped_job_id = None
        return done

    def handle_execution_ended(self, job, queue, heartbeat_ttl) -> None:
        # rq's beats the job in a round trip of its own; the end's transaction, just after, saves
        # the whole job hash, this last heartbeat with it.
        job.ended_at = job.last_heartbeat = now()

    def sweep_abandoned(self) -> None:
        """At most every heartbeat interval: requeue at once the jobs of workers that died (``abandoned``)."""
        if time.monotonic() - self._swept < self.job_monitoring_interval:
            return
        self._swept = time.monotonic()
        for job in abandoned.requeue_safely(self.queues, self._exc_handlers):
            self.publish(job, events.STATE)

    def clean_registries(self) -> None:
        # rq's, but the started registry's abandoned jobs are first requeued at once (``abandoned``), and
        # rq's own cleanup then sees only the entries that sweep examined (same cut-off): a job that two
        # sweeps find is requeued by one, never also scheduled for a retry by rq.
        for queue in self.queues:
            if not queue.acquire_maintenance_lock():
                continue
            self.log.debug("Worker %s: cleaning registries for queue: %s", self.name, queue.name)
            until = current_timestamp()
            for job in abandoned.requeue_abandoned([queue], self._exc_handlers, until):
                self.publish(job, events.STATE)
            kwargs = {"name": queue.name, "connection": queue.connection, "serializer": queue.serializer}
            FinishedJobRegistry(**kwargs).cleanup()
            StartedJobRegistry(**kwargs).cleanup(until, exception_handlers=self._exc_handlers)
            FailedJobRegistry(**kwargs).cleanup()
            DeferredJobRegistry(**kwargs).cleanup()
            worker_registration.clean_worker_registry(queue)
            queue.intermediate_queue.cleanup(self, queue)
            queue.release_maintenance_lock()
        self.last_cleaned_at = now()

    def check_for_suspension(self, burst: bool) -> None:
        # rq asks Redis before every job; an operator's `rq suspend` can wait a second.
        if time.monotonic() - self._suspension_checked < 1.0:
            return
        self._suspension_checked = time.monotonic()
        try:
            super().check_for_suspension(burst)
        except redis.ConnectionError:
            pass  # Redis is away: the dequeue below waits for it with backoff

    def run_maintenance_tasks(self) -> None:
        if self._stop_requested:
            # rq sweeps before it looks at the stop: after a job that outlasted the interval, a stopping
            # worker cleaned every registry, and (its scheduler's lock free again) spawned a scheduler
            # only to kill it in its teardown. The next sweep is another worker's.
            return
        try:
            super().run_maintenance_tasks()
        except redis.ConnectionError as exc:
            log.warning("maintenance skipped, Redis unreachable: %s", exc)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if timeout is None:  # burst mode: one look
            self.feed()
            return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
        idle_since = time.monotonic()
        pause = 1.0
        first = True
        while True:
            try:
                if not first:  # rq checked before calling us; while we idle in here, we check
                    self.check_for_suspension(burst=False)
                    if self._stop_requested:
                        return None
                first = False
                self.runtime.follow_host()  # idle: a sibling that came or went changes the threads now
                self.sweep_abandoned()
                self.feed()
                result = super().dequeue_job_and_maintain_ttl(
                    min(timeout, self.FEED_INTERVAL), self.FEED_INTERVAL
                )
                pause = 1.0
            except redis.ConnectionError as exc:  # Redis away: wait for it here, models stay loaded
                log.warning("Redis unreachable (%s); trying again in %.0f s", exc, pause)
                time.sleep(pause)
                pause = min(pause * 2, RECONNECT_MAX)
                continue
            if result is not None:
                return result
            if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                return None


def build_worker(
    settings: Settings, queues: tuple[str, ...], runtime: Runtime | None = None, name: str | None = None
) -> ImgprocWorker:
    """A worker on ``queues`` (in priority order), with a freshly loaded runtime unless one is given."""
    runtime = runtime or Runtime.load(settings, queues)
    return ImgprocWorker(
        list(queues),
        connection=runtime.conn,
        runtime=runtime,
        name=name,
        default_result_ttl=settings.result_ttl,
    )
