"""imgproc's Python client: ``Client(base_url, api_key)``. Needs only httpx (none of the worker's libraries).

client.py    Client: enqueue (single, bulk), job, batch, cancel, stats, download, event streams; retries
models.py    Job, Batch, Result, JobError; ``wait`` follows the event stream, polls when it fails
errors.py    ApiError and one subclass per kind, each with the API's ``code``; UnpackError
cutouts.py   unpack_zip: a zip result (color.jpg + alpha.png) as one RGBA PNG (Pillow, imported then)
webhooks.py  verify_webhook, for receivers
jobtypes.py  the job types and their endpoints, written from the table by ``python -m imgproc.clientgen``
"""

from .client import Client
from .cutouts import unpack_zip
from .errors import (
    ApiError,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    RateLimited,
    Timeout,
    Unauthorized,
    Unavailable,
    UnpackError,
    WebhookVerificationError,
)
from .models import Batch, Job, JobError, Result
from .webhooks import verify_webhook

__all__ = [
    "ApiError",
    "Batch",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "InvalidRequest",
    "Job",
    "JobError",
    "NotFound",
    "RateLimited",
    "Result",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "UnpackError",
    "WebhookVerificationError",
    "unpack_zip",
    "verify_webhook",
]
