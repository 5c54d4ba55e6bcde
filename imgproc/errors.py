"""The error tree; every error carries the stable ``code`` of API.md.

    ImgprocError                      code, message, http status
    ├── RequestError                  refused by the API before anything is enqueued
    │   ├── InvalidRequest            400 invalid_request
    │   ├── InvalidOptions            400 invalid_options (names the option)
    │   ├── Unauthorized              401 unauthorized
    │   ├── Forbidden                 403 forbidden (a missing CSRF token, an operator's route)
    │   ├── VendorDisabled            403 vendor_disabled (an operator disabled the key's vendor)
    │   ├── NotFound                  404 not_found
    │   ├── Conflict                  409 conflict
    │   ├── PayloadTooLarge           413 payload_too_large
    │   ├── TooManyItems              413 too_many_items
    │   ├── UnsupportedMediaType      415 unsupported_media_type
    │   ├── RateLimited               429 rate_limited (a request limit of the vendor's)
    │   │   └── TooManyUploads        429 too_many_uploads (the vendor's uploads waiting in Redis)
    │   ├── TooManyStreams            429 too_many_streams (the vendor's open event streams)
    │   └── Unavailable               503 unavailable
    ├── JobError                      raised inside a job
    │   ├── PermanentError            failed at once, never retried
    │   │   fetch_forbidden, image_too_large, unsupported_image, no_face_found,
    │   │   invalid_options, storage_failed (4xx), database_failed (bad credentials, a dropped
    │   │   column of a write-back table), internal
    │   └── TransientError            retried with exponential backoff
    │       fetch_failed, storage_failed (5xx, network), database_failed, timeout, worker_lost
    └── SetupError                    raised at start-up or by an operator's command, never in a job
        ├── ModelMissing              model_missing: a model file is not provisioned
        │   └── ChecksumMismatch      model_corrupt: a model file is not the one the manifest names
        ├── DeviceUnavailable         device_unavailable: IMGPROC_DEVICE=cuda where CUDA cannot run
        ├── SchemaMismatch            schema_mismatch: the database is not at this imgproc's schema
        └── WritebackInvalid          writeback_invalid: IMGPROC_WRITEBACK_FILE or a table it names is wrong

Every error is built the same way, ``Error(message, *, code=..., details=...)``;
a class with a fixed code needs no ``code``. Library errors are translated at
the boundary (``imgproc.adapters``):
``raise TransientError("the host answered 503", code="fetch_failed") from exc``.
"""

from __future__ import annotations


class ImgprocError(Exception):
    """Raised for any failure that has a stable API error code."""

    code = "internal"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "details": self.details}


class RequestError(ImgprocError):
    """Raised when the API refuses a request."""

    status = 400


class InvalidRequest(RequestError):
    """Raised for bad JSON, a missing field or a bad URL."""

    code = "invalid_request"


class InvalidOptions(RequestError):
    """Raised when an option is unknown or out of range; ``details.option`` names it."""

    code = "invalid_options"

    def __init__(self, option: str, message: str, *, item: int | None = None, also: str | None = None):
        """``item``: the index of the bulk item whose options these are (``details.item`` too).

        ``also``: the other option of a contradiction; ``details.options`` then names both.
        """
        where = "" if item is None else f"items[{item}]: "
        details: dict = {"option": option}
        if also is not None:
            details["options"] = [option, also]
        if item is not None:
            details["item"] = item
        named = f"option {option!r}" if also is None else f"options {option!r} and {also!r}"
        super().__init__(f"{where}{named}: {message}", details=details)
        self.option = option
        self.also = also
        self.reason = message

    def of_item(self, item: int) -> InvalidOptions:
        """The same refusal, said of bulk item ``item``: a new error, the caught one stays as raised."""
        return InvalidOptions(self.option, self.reason, item=item, also=self.also)


class Unauthorized(RequestError):
    """Raised when the API key is missing or unknown."""

    code = "unauthorized"
    status = 401


class Forbidden(RequestError):
    """Raised when a browser's request lacks its CSRF token, or a vendor asks for an operator's route."""

    code = "forbidden"
    status = 403


class VendorDisabled(RequestError):
    """Raised when the key's vendor was disabled by an operator (its jobs are kept; enabling restores it)."""

    code = "vendor_disabled"
    status = 403


class NotFound(RequestError):
    """Raised for an id that does not exist or belongs to another vendor."""

    code = "not_found"
    status = 404


class Conflict(RequestError):
    """Raised when the request cannot be applied to the job's current state."""

    code = "conflict"
    status = 409


class PayloadTooLarge(RequestError):
    """Raised when a request body is over ``max_request_bytes``."""

    code = "payload_too_large"
    status = 413


class TooManyItems(RequestError):
    """Raised when a bulk request has more than ``max_bulk_items`` items."""

    code = "too_many_items"
    status = 413


class UnsupportedMediaType(RequestError):
    """Raised when the body is neither JSON nor multipart form data."""

    code = "unsupported_media_type"
    status = 415


class RateLimited(RequestError):
    """Raised when a vendor is over one of its request limits (``imgproc.api.ratelimits``)."""

    code = "rate_limited"
    status = 429


class TooManyUploads(RateLimited):
    """Raised when a vendor's uploads waiting for their jobs would pass ``vendor_upload_bytes``."""

    code = "too_many_uploads"
    #: Seconds a client waits before sending again (``Retry-After``): a few of its jobs end meanwhile.
    retry_after = 5


class TooManyStreams(RequestError):
    """Raised when a vendor opens an event stream while it has ``max_streams_per_vendor`` open."""

    code = "too_many_streams"
    status = 429
    #: Seconds a client waits before opening another (``Retry-After``), or polls meanwhile.
    retry_after = 15


class Unavailable(RequestError):
    """Raised when Redis or the database cannot be reached; nothing was enqueued."""

    code = "unavailable"
    status = 503


class JobError(ImgprocError):
    """Raised inside a job; ``retryable`` tells the worker whether to retry."""

    retryable = False

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class PermanentError(JobError):
    """Raised for a failure that another attempt would repeat (bad image, no face, 4xx)."""


class TransientError(JobError):
    """Raised for a failure that may pass (network, storage 5xx, database connection)."""

    retryable = True


class SetupError(ImgprocError):
    """Raised when the service cannot start as configured (a worker at boot, an operator's command)."""

    code = "setup_failed"


class ModelMissing(SetupError):
    """Raised when a model file is not provisioned (``make models`` provisions them)."""

    code = "model_missing"


class DeviceUnavailable(SetupError, RuntimeError):
    """Raised when IMGPROC_DEVICE=cuda cannot be honoured (a RuntimeError too, as 0.1.0 raised)."""

    code = "device_unavailable"


class ChecksumMismatch(ModelMissing):
    """Raised when a model file's sha256 differs from the manifest's."""

    code = "model_corrupt"


class SchemaMismatch(SetupError):
    """Raised when the database's schema is not the revision this imgproc needs (``imgproc db upgrade``)."""

    code = "schema_mismatch"


class WritebackInvalid(SetupError):
    """Raised when the write-back file is wrong, or a target table does not match it (names the line)."""

    code = "writeback_invalid"
