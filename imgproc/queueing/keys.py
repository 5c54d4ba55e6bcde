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

#: Plans (``imgproc.queueing.planfeed``, written by whoever changes a plan, a vendor's plan or overrides):
#: vendor -> its fair-share weight / cap on jobs running at once, only where its plan or overrides set
#: one (absent: weight 1, ``IMGPROC_VENDOR_CONCURRENCY``); vendor -> JSON of every value its plan and
#: overrides set (limits, max_items, disabled); a counter bumped by every change, read by each API
#: process at most once a second.
KEY_PLAN_WEIGHT = "imgproc:plan:weight"
KEY_PLAN_CAP = "imgproc:plan:cap"
KEY_PLAN_VENDORS = "imgproc:plan:vendors"
KEY_PLAN_VERSION = "imgproc:plan:version"

#: Every state a job can be in, as the API names them.
STATES = ("queued", "started", "deferred", "scheduled", "finished", "failed", "canceled", "stopped")
#: States a job never leaves.
DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}
