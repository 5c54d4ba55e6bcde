"""The API's errors as exceptions, one class per kind, each carrying the API's ``code``."""

from __future__ import annotations


class ApiError(Exception):
    """Raised when the API answers with an error; ``code`` is its stable code (API.md)."""

    def __init__(self, code: str, message: str, status: int, details: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}


class InvalidRequest(ApiError):
    """Raised for 400: a bad field or option (``details["option"]`` names it), or a refused URL."""


class Unauthorized(ApiError):
    """Raised for 401: a missing or unknown API key."""


class NotFound(ApiError):
    """Raised for 404: no such job or batch, or another vendor's."""


class Conflict(ApiError):
    """Raised for 409: e.g. cancelling a job that is running or has ended."""


class RateLimited(ApiError):
    """Raised for 429 once the retries are spent; ``retry_after`` is the server's advice in seconds."""

    retry_after: float | None = None


class Unavailable(ApiError):
    """Raised for 503 (Redis or the database down; nothing was enqueued) once the retries are spent."""


class ConnectionFailed(ApiError):
    """Raised when the API cannot be reached at all, once the retries are spent."""


class Timeout(ApiError):
    """Raised when ``wait`` runs out of time before the job (or batch) has ended."""


class UnpackError(ValueError):
    """Raised by ``unpack_zip`` for a zip result that is not a ``color.jpg`` and ``alpha.png`` of one size."""


class WebhookVerificationError(Exception):
    """Raised by ``verify_webhook`` for a message that is not signed with the secret, or too old."""


BY_STATUS = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
}
