"""imgproc's own Redis keys beside rq's, and the job states they count.

``imgproc.queueing.fairshare`` keeps the keys of the vendors' lanes.
"""

from __future__ import annotations

from rq.job import JobStatus

#: A bulk request's vendor, type and job ids (JSON), kept as long as a failed job.
KEY_BATCH = "imgproc:batch:{}"
#: An uploaded photo's bytes, until its job ends (``imgproc.queueing.uploads``).
KEY_UPLOAD = "imgproc:upload:{}"
#: Per vendor: bytes of its uploads in Redis, each upload's bytes and expiry by job id (``uploads``).
KEY_UPLOAD_HELD = "imgproc:upload-held:{}"
KEY_UPLOAD_SIZES = "imgproc:upload-sizes:{}"
KEY_UPLOAD_EXPIRIES = "imgproc:upload-expiries:{}"
#: Sorted set of a vendor's job ids by enqueue time: its counts, never another vendor's.
KEY_VENDOR_JOBS = "imgproc:vendor-jobs:{}"
#: (vendor, sha256 of the key) -> the job id that claimed an idempotency key.
KEY_IDEMPOTENCY = "imgproc:idempotency:{}:{}"

#: (limit, vendor) -> sorted set of the units a vendor used of a request limit, by time (``api.ratelimits``).
KEY_LIMIT = "imgproc:limit:{}:{}"

#: Every state a job can be in, as the API names them.
STATES = ("queued", "started", "deferred", "scheduled", "finished", "failed", "canceled", "stopped")
#: States a job never leaves.
DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}
