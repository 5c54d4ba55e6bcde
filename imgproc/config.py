"""Settings: the one place that reads the environment.

Every setting is listed in ``FIELDS`` with its environment variable, its
default and what it does; the README's configuration table is this list.
``Settings.from_env()`` is called once by ``create_app`` and ``worker.main``;
tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The checkout (or install) root: default home of var/ and models/.
ROOT = Path(__file__).resolve().parent.parent


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


#: Well-known ports of services that speak enough of a line protocol to be abused through an HTTP
#: request: SSH, telnet, SMTP (25/465/587), POP3/IMAP, LDAP, SMB, memcached, Redis (and Sentinel),
#: MySQL, PostgreSQL, MSSQL, Oracle, MongoDB, Elasticsearch, etcd, ZooKeeper, Kafka, AMQP, MQTT, NATS.
SERVICE_PORTS = (
    22, 23, 25, 110, 143, 389, 445, 465, 587, 636, 993, 995, 1433, 1521, 1883, 2181, 2379, 2380,
    3306, 4222, 5432, 5672, 6379, 9092, 9200, 9300, 11211, 15672, 26379, 27017,
)  # fmt: skip


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Frozen configuration shared by the API, the workers and the CLI."""

    # --- services -------------------------------------------------------
    #: Redis holding the queues, job state, batches and (later) rate limits.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Redis Sentinels (``host:port,...``) that name the master; when set, ``redis_url`` gives only the
    #: database number and password, and a failover is followed without a restart.
    redis_sentinels: tuple[str, ...] = ()
    #: The master's name in the sentinels' configuration (``sentinel monitor NAME ...``).
    redis_sentinel_master: str = "imgproc"
    #: Records and vendors; SQLite file under var/ unless a SQLAlchemy URL is given
    #: (``mysql+pymysql://user:pass@host/db`` for MySQL/MariaDB).
    database_url: str = f"sqlite:///{ROOT / 'var' / 'imgproc.db'}"
    #: Local result storage (used when ``cloudinary_url`` is empty), served under /media/.
    storage_dir: str = str(ROOT / "var" / "media")
    #: The API's public address (``https://imgproc.example.com``), base of local results' URLs. Empty: the API
    #: builds them from the request that reads them, and a worker, which has no request, writes
    #: ``/media/<key>`` (relative to the API) into records rows, write-backs and webhooks.
    public_url: str = ""
    #: Proxies in front of the API whose ``X-Forwarded-For/-Proto/-Host/-Port/-Prefix`` are believed
    #: (werkzeug's ProxyFix, one value of each per proxy); 0: those headers are ignored.
    trusted_proxies: int = 0
    #: ``cloudinary://KEY:SECRET@CLOUD[?upload_prefix=...]``; set it to store results on Cloudinary.
    cloudinary_url: str = ""
    #: Folder (public_id prefix) of uploads on Cloudinary.
    cloudinary_folder: str = "imgproc"
    #: Seconds an upload to Cloudinary may take before it counts as failed (and is retried).
    storage_timeout: float = 60.0

    # --- models and workers ---------------------------------------------
    #: Folder of model weights (rembg's U2NET_HOME): ISNet and BlazeFace from ``make models``.
    models_dir: str = str(ROOT / "models")
    #: Downloads kept outside the checkout, so a fresh clone does not fetch the weights again.
    cache_dir: str = str(Path.home() / ".cache" / "imgproc")
    #: Default background-removal model of a job that names none.
    bg_model: str = "isnet-general-use"
    #: Every model a worker loads at start-up; a job may ask for any of them.
    bg_models: tuple[str, ...] = ("isnet-general-use",)
    #: File of the BlazeFace short-range detector, inside ``models_dir``.
    face_model: str = "face_detection_short_range.tflite"
    #: File of MediaPipe's face mesh (eyes and chin of ID photos), inside ``models_dir``.
    face_landmark_model: str = "face_landmark.tflite"
    #: Minimum BlazeFace score for a face to count.
    face_min_confidence: float = 0.5
    #: ONNX Runtime device: ``auto`` (CUDA when it works, else CPU with a warning), ``cpu`` or ``cuda``
    #: (CUDA or the worker refuses to start, saying why).
    device: str = "auto"
    #: ISNet's weights: ``fp16`` (the provisioned file, already a float16 export) or ``fp32`` (its
    #: upcast copy, made by ``make models``); see the README's GPU section.
    precision: str = "fp16"
    #: Jobs one worker process runs at once (job slots), whose ISNet inferences share one batched run.
    batch: int = 1
    #: Milliseconds a partial batch waits for more photos before it runs.
    batch_wait_ms: float = 5.0
    #: Intra-op threads per worker process; 0 means cores / the worker processes on this host.
    threads: int = 0
    #: How many worker processes share this host (``make run-workers N`` sets it); 0: each worker
    #: counts its live siblings on the host through Redis and follows the count (``queueing.hosts``).
    workers_per_host: int = 0
    #: Seconds between a busy worker's heartbeats; a job whose worker missed three
    #: is abandoned (worker killed) and retried as ``worker_lost``.
    heartbeat_interval: int = 5
    #: Seconds between a worker's sweeps for abandoned and expired jobs.
    maintenance_interval: int = 10
    #: File a worker writes once its models are loaded and removes when it leaves (a readiness
    #: probe's ``test -f``); empty: none.
    ready_file: str = ""
    #: A worker leaves after this many jobs (0: never), for ``make run-workers`` to start a fresh one.
    worker_max_jobs: int = 0
    #: Seconds a job may run before it is killed and counted as a ``timeout``.
    job_timeout: int = 300
    #: Attempts per job (first run plus retries) for transient failures.
    max_attempts: int = 3
    #: Seconds before the first retry; each later retry waits twice as long.
    retry_backoff: float = 5.0
    #: Seconds a finished job waits for the database to write its record (a MariaDB restart takes
    #: 5-30 s) before the attempt fails: an outage of ours should not spend the vendor's attempts.
    database_wait: float = 30.0
    #: Seconds a finished job (and its result) stays pollable.
    result_ttl: int = 24 * 3600
    #: Seconds a failed job stays pollable.
    failure_ttl: int = 7 * 24 * 3600
    #: Deflate level of PNG results, 0-3 (ISA-L; 1: as fast as 0, 10% smaller files).
    png_compress_level: int = 1

    # --- limits on input ------------------------------------------------
    #: Largest image, fetched or uploaded, in bytes.
    max_image_bytes: int = 20 * 1024 * 1024
    #: Largest image in pixels, checked from the header before decoding.
    max_image_pixels: int = 50_000_000
    #: Most pixels of a result that options make larger than its photo (``size``, ``resize``, a face
    #: crop's frame): 25 MP is 5000x5000, Shopify's largest product image; ID photos are under 1 MP.
    max_output_pixels: int = 25_000_000
    #: Most pixels ``alpha_matting`` works on (0.55 GiB and 3-6 s a megapixel): a larger photo is
    #: matted shrunk to it and its alpha brought back up (README: Limits, the edge it keeps).
    max_matting_pixels: int = 2_000_000
    #: A background removal whose ``confidence`` (0-1, from its mask) is under this is marked
    #: ``review: true`` for a person to look at, and counted in ``imgproc_results_review_total``;
    #: 0.65 lies between the good masks and the doubtful ones of ``python -m bench.confidence``.
    review_threshold: float = 0.65
    #: Largest request body (multipart uploads included) in bytes.
    max_request_bytes: int = 25 * 1024 * 1024
    #: Most items in one bulk request.
    max_bulk_items: int = 500
    #: Seconds to connect to a photo's host, to wait for each read, and for the whole fetch.
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 15.0
    fetch_deadline: float = 30.0
    #: Hosts or CIDRs a photo or webhook URL may reach despite being private or loopback (tests,
    #: intranets); ``host:port``, ``cidr:port`` or ``[v6]:port`` opens one port only.
    fetch_allow_hosts: tuple[str, ...] = ()
    #: Ports no vendor URL ever reaches, allow-listed or not (Redis, databases, mail, brokers, SSH, ...);
    #: the ports of ``REDIS_URL`` and ``IMGPROC_DATABASE_URL`` are always added.
    fetch_blocked_ports: tuple[int, ...] = SERVICE_PORTS

    # --- protection -----------------------------------------------------
    #: Per-vendor request limits (strings of the ``limits`` library), counted in Redis by every API process.
    limit_global: str = "100 per 15 minutes"
    #: Every enqueue endpoint, single or bulk.
    limit_image: str = "50 per 15 minutes"
    #: Background removals: each item of a bulk counts as one.
    limit_bg_removal: str = "30 per hour"
    #: Bulk requests of any kind.
    limit_bulk: str = "10 per hour"
    #: GETs of a signed-in page (``/ui/``: its lists, streams, limits), in place of ``limit_global``:
    #: the operator's page reads about 60 a minute.
    limit_session_reads: str = "300 per minute"
    #: Most jobs of one vendor queued-for-a-worker or running at once, across all workers.
    vendor_concurrency: int = 2
    #: Most bytes of uploaded photos one vendor may have waiting in Redis for their jobs at once (an
    #: upload is dropped when its job ends); more is ``429 too_many_uploads``. 0: no bound.
    vendor_upload_bytes: int = 200 * 1024 * 1024
    #: Most event streams (``/events``) one vendor may have open at once, across all API processes; one
    #: more is ``429 too_many_streams``. Each holds an API thread (1,024 a process) until its job ends.
    max_streams_per_vendor: int = 50
    #: Seconds an ``idempotency_key`` maps to its first job.
    idempotency_ttl: int = 24 * 3600

    #: Record metrics for /metrics; turned off only to measure what recording them costs.
    metrics: bool = True

    # --- webhooks -------------------------------------------------------
    #: Seconds between a webhook's attempts, comma-separated; their count is the number of retries
    #: (the Standard Webhooks schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    webhook_backoff: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    #: Seconds a receiver has to answer an attempt.
    webhook_timeout: float = 15.0
    #: Seconds after ``imgproc vendors webhook-secret NAME --rotate`` during which the old secret signs too.
    webhook_secret_grace: int = 24 * 3600
    #: Every image worker also delivers webhooks, on a thread of its own, so that plain ``python
    #: worker.py`` replicas deliver them; off (0): only ``python worker.py --queues webhooks`` workers do.
    webhook_thread: bool = True
    #: Most webhook deliveries of one vendor handed to delivery threads at once (ready or being sent), so
    #: that a slow or dead receiver holds that many at most and other vendors' webhooks go past it.
    webhook_vendor_concurrency: int = 1

    # --- records --------------------------------------------------------
    #: Most columns per UPDATE of a record, as in the original system.
    db_max_fields: int = 10
    #: TOML file of the vendors' own tables that results are also written into (README: "Writing
    #: results into your own tables"); empty: none. Read at start, again on a worker's SIGHUP.
    writeback_file: str = ""

    # --- derived ----------------------------------------------------------
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: The environment ``from_env`` read, for ``env:NAME`` values of the write-back file (so no deeper
    #: module reads os.environ); never shown, compared or hashed: it holds secrets.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def intra_op_threads(self) -> int:
        """Threads for one worker's ONNX Runtime session, so N workers do not oversubscribe."""
        return self.threads_among(self.workers_per_host)

    def threads_among(self, workers: int) -> int:
        """Threads for one of ``workers`` worker processes on this host (``IMGPROC_THREADS`` wins)."""
        if self.threads > 0:
            return self.threads
        return max(1, self.cores // max(1, workers))

    @property
    def max_retries(self) -> int:
        return max(0, self.max_attempts - 1)

    @property
    def retry_intervals(self) -> list[int]:
        """Exponential backoff, one interval per retry (RQ schedules them)."""
        return [max(1, round(self.retry_backoff * 2**i)) for i in range(self.max_retries)]

    @property
    def matting_cache_dir(self) -> Path:
        """pymatting's compiled numba kernels (``alpha_matting``), built by ``imgproc models fetch``."""
        return Path(self.models_dir) / "numba-cache"

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``IMGPROC_*`` (and ``REDIS_URL``, ``CLOUDINARY_URL``) variables."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            name = ENV_NAMES.get(f.name, "IMGPROC_" + f.name.upper())
            if name not in env or f.name in ("cores", "environ"):
                continue
            raw = env[name]
            default = f.default
            if isinstance(default, bool):
                values[f.name] = _bool(raw)
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            elif isinstance(default, tuple):
                items = _list(raw)
                numeric = isinstance(default[0], int) if default else f.name == "webhook_backoff"
                values[f.name] = tuple(int(i) for i in items) if numeric else items
            else:
                values[f.name] = raw
        settings = cls(**values, environ=dict(env))
        if "bg_models" not in values and settings.bg_model not in settings.bg_models:
            settings = settings.replace(bg_models=(settings.bg_model,))
        return settings.validated()

    def validated(self) -> Settings:
        """Refuse impossible combinations at start-up rather than in a job."""
        if self.device not in {"auto", "cpu", "cuda"}:
            raise ValueError(f"IMGPROC_DEVICE must be auto, cpu or cuda, not {self.device!r}")
        if self.precision not in {"fp16", "fp32"}:
            raise ValueError(f"IMGPROC_PRECISION must be fp16 or fp32, not {self.precision!r}")
        if self.batch < 1:
            raise ValueError("IMGPROC_BATCH must be at least 1")
        if self.bg_model not in self.bg_models:
            raise ValueError(
                f"IMGPROC_BG_MODEL {self.bg_model!r} is not among IMGPROC_BG_MODELS {self.bg_models}"
            )
        if self.max_output_pixels < 1 or self.max_matting_pixels < 1:
            raise ValueError("IMGPROC_MAX_OUTPUT_PIXELS and IMGPROC_MAX_MATTING_PIXELS must be at least 1")
        if self.vendor_concurrency < 1:
            raise ValueError("IMGPROC_VENDOR_CONCURRENCY must be at least 1")
        if 0 < self.vendor_upload_bytes < self.max_image_bytes:
            raise ValueError(
                "IMGPROC_VENDOR_UPLOAD_BYTES must be 0 (no bound) or at least IMGPROC_MAX_IMAGE_BYTES"
            )
        if self.webhook_vendor_concurrency < 1:
            raise ValueError("IMGPROC_WEBHOOK_VENDOR_CONCURRENCY must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("IMGPROC_MAX_ATTEMPTS must be at least 1")
        if self.trusted_proxies < 0:
            raise ValueError("IMGPROC_TRUSTED_PROXIES must be 0 (no proxy) or the number of proxies in front")
        if self.workers_per_host < 0 or self.threads < 0:
            raise ValueError("IMGPROC_WORKERS_PER_HOST and IMGPROC_THREADS must be 0 (automatic) or more")
        return self


#: Variables whose names do not follow ``IMGPROC_<FIELD>``.
ENV_NAMES = {
    "redis_url": "REDIS_URL",
    "redis_sentinels": "REDIS_SENTINELS",
    "redis_sentinel_master": "REDIS_SENTINEL_MASTER",
    "cloudinary_url": "CLOUDINARY_URL",
}
