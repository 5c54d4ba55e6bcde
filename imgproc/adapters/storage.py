"""Where results go: a local folder served under /media/, or Cloudinary.

Keys are relative paths such as ``jobs/<id>/result.png``, chosen by the job so
that a retry writes the same key again: ``put`` overwrites, and ``url_of``
lets a retried job reuse what an earlier attempt already stored.

Local storage's URLs are relative to the API that serves them (``/media/<key>``):
the API makes them absolute when it answers (``IMGPROC_PUBLIC_URL``, else the
address the request came to), so a job stores no address that may change.
Cloudinary's are absolute.

Library errors are translated here: a server error, rate limit, timeout or
network failure is a ``TransientError("storage_failed")``; any other refusal
(bad credentials, bad request) is a ``PermanentError("storage_failed")``.
Messages never carry the API secret, a request signature or the
``cloudinary://`` URL, and are raised outside the ``except`` block so that no
library exception rides along as ``__context__``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import cloudinary.exceptions
import cloudinary.uploader

from imgproc.config import Settings
from imgproc.errors import PermanentError, TransientError

_KEY_RE = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")

#: HTTP statuses worth another attempt besides 5xx (420 is Cloudinary's old rate limit).
_RETRYABLE_STATUSES = frozenset({408, 420, 429})

#: Hex digests of SHA-1 and SHA-256: request signatures, which a server may echo back.
_SIGNATURE_RE = re.compile(r"\b(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40})\b")

_PARSE_ERROR_RE = re.compile(r"Error parsing server response \((\d{3})\)")

#: Where the API serves local storage: a local result's URL is this prefix and its key.
MEDIA = "/media/"


class Storage(Protocol):
    """Stores job results under stable keys and hands out their URLs (absolute, or relative to the API)."""

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key``, replacing what was there, and return its URL."""
        ...

    def url_of(self, key: str) -> str | None:
        """Return the URL of ``key`` if it is already stored, else None."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file that holds ``key`` where results are files here (the API serves and zips them), else None.

        ``ValueError`` for a key that is not a safe relative path.
        """
        ...

    def delete_folder(self, prefix: str) -> int | None:
        """Delete every result under ``prefix/`` (a purged vendor's): how many; None where they are kept
        elsewhere and not deleted from here."""
        ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative path, else raise ``ValueError``."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"bad storage key {key!r}: use relative paths of [A-Za-z0-9._-] parts")
    if any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"bad storage key {key!r}: '.' and '..' are not allowed")
    return key


class LocalStorage:
    """Keeps results as files under ``root``, served by the API under ``/media/<key>`` (their URL)."""

    def __init__(self, root: str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage(root={str(self.root)!r})"

    def local_path(self, key: str) -> Path:
        """Return the file that holds ``key`` (which may not exist yet)."""
        return self.root / check_key(key)

    def _url(self, key: str) -> str:
        return MEDIA + key

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Write ``data`` to the key's file atomically and return its URL, ``/media/<key>``."""
        # content_type is not stored: the API serves /media/ by the key's extension.
        path = self.local_path(key)
        # A unique temporary name in the same folder, so os.replace is atomic and
        # two attempts writing the same key at once never share a half-written file.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        failure = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # os.open with a mode (not mkstemp's 0600) so a web server running as
            # another user can still read the result, as the umask allows.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with open(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            failure = f"could not write {key}: {exc.strerror or exc}"
            with contextlib.suppress(OSError):
                tmp.unlink()
        if failure:
            # A full or unwritable disk is the local analogue of a storage 5xx.
            raise TransientError(failure, code="storage_failed")
        return self._url(key)

    def url_of(self, key: str) -> str | None:
        """Return the key's URL if its file exists, else None."""
        return self._url(key) if self.local_path(key).is_file() else None

    def delete_folder(self, prefix: str) -> int:
        """Delete every file under ``prefix/`` (a removed vendor's results); how many there were."""
        folder = self.local_path(prefix)
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count


def parse_cloudinary_url(url: str) -> dict[str, str | None]:
    """Split ``cloudinary://KEY:SECRET@CLOUD[?upload_prefix=...]`` into per-call SDK options."""
    # The SDK's parser lives on its global Config, which also reads the
    # environment; this is the same urlparse-based reading, without the global.
    parts = urlsplit(url)
    if parts.scheme.lower() != "cloudinary":
        raise ValueError("CLOUDINARY_URL must start with cloudinary://")
    if not (parts.username and parts.password and parts.hostname):
        raise ValueError("CLOUDINARY_URL must be cloudinary://API_KEY:API_SECRET@CLOUD_NAME")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return {
        "api_key": parts.username,
        "api_secret": parts.password,
        "cloud_name": parts.hostname,
        "upload_prefix": query.get("upload_prefix") or None,
        "signature_algorithm": query.get("signature_algorithm") or "sha1",
    }


class CloudinaryStorage:
    """Uploads results to Cloudinary through its SDK, with credentials passed on every call.

    ``url_of`` always answers None: checking would take an Admin API call
    (rate-limited per hour, and a second request per job), while uploads are
    deterministic (same public_id, ``overwrite=True``), so a retried job simply
    uploads again and gets an equivalent URL.
    """

    def __init__(self, cloudinary_url: str, folder: str, timeout: float = 60):
        self._options = parse_cloudinary_url(cloudinary_url)
        self._secret = self._options["api_secret"]
        self._cloudinary_url = cloudinary_url
        self.cloud_name = self._options["cloud_name"]
        self.folder = folder.strip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"CloudinaryStorage(cloud_name={self.cloud_name!r}, folder={self.folder!r})"

    def public_id_of(self, key: str) -> str:
        """Return the public_id of ``key``: the key under the folder, without its extension."""
        stem, dot, ext = check_key(key).rpartition(".")
        # Only a dot in the last path part starts an extension.
        if not dot or "/" in ext or not stem or stem.endswith("/"):
            stem = key
        return f"{self.folder}/{stem}" if self.folder else stem

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Upload ``data`` as the key's public_id, replacing any earlier one; return secure_url."""
        # content_type is not sent: Cloudinary detects an image's format from the bytes. Anything else
        # (a cut-out's zip) is a "raw" file, whose public_id keeps its extension (Cloudinary's rule).
        raw = not content_type.startswith("image/")
        public_id = self.public_id_of(key)
        if raw:
            public_id = f"{self.folder}/{check_key(key)}" if self.folder else check_key(key)
        failure: tuple[bool, str] | None = None
        try:
            result = cloudinary.uploader.upload(
                io.BytesIO(data),
                public_id=public_id,
                overwrite=True,
                resource_type="raw" if raw else "image",
                timeout=self.timeout,
                # Error bodies come back as data with their HTTP status instead of
                # as exceptions whose class hides 502 and 504 behind a bare Error.
                return_error=True,
                # Explicit values, so the SDK's global config (which it fills from
                # the environment at import) never decides anything here.
                signature_version=2,
                oauth_token=None,
                upload_preset=None,
                **self._options,
            )
        except cloudinary.exceptions.Error as exc:
            failure = self._classify_exception(str(exc))
        if failure is None:
            error = result.get("error")
            if error:
                status = int(error.get("http_code") or 0)
                failure = (_retryable(status), f"HTTP {status}: {error.get('message', '')}")
            elif not result.get("secure_url"):
                failure = (True, "the response has no secure_url")
        if failure is not None:
            retryable, detail = failure
            message = f"Cloudinary upload of {public_id} failed: {self._scrub(detail)}"
            raise (TransientError if retryable else PermanentError)(message, code="storage_failed")
        return result["secure_url"]

    def url_of(self, key: str) -> str | None:
        """Return None: results are uploaded again, not looked up (see the class docstring)."""
        check_key(key)
        return None

    def local_path(self, key: str) -> None:
        """Return None: results are Cloudinary's, served from its CDN, not from a file here."""
        check_key(key)
        return None

    def delete_folder(self, prefix: str) -> None:
        """Return None: deleting takes the Admin API (rate-limited per hour); deleted there by hand."""
        return None

    @staticmethod
    def _classify_exception(text: str) -> tuple[bool, str]:
        # With return_error=True the SDK raises only for a response that is not
        # JSON (a proxy's HTML page, with its status in the message) and for
        # urllib3 and socket errors: timeouts, refused or reset connections.
        match = _PARSE_ERROR_RE.search(text)
        if match:
            status = int(match.group(1))
            return _retryable(status), f"HTTP {status}, not a Cloudinary response"
        return True, text

    def _scrub(self, text: str) -> str:
        for secret in (self._cloudinary_url, self._secret):
            if secret:
                text = text.replace(secret, "***")
        text = _SIGNATURE_RE.sub("***", text)
        return text[:500]


def _retryable(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_STATUSES or status == 0


def make_storage(settings: Settings) -> Storage:
    """Build Cloudinary storage when ``cloudinary_url`` is set, else local storage."""
    if settings.cloudinary_url:
        return CloudinaryStorage(
            settings.cloudinary_url, settings.cloudinary_folder, settings.storage_timeout
        )
    return LocalStorage(settings.storage_dir)
