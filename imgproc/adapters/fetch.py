"""The SSRF-safe, size-bounded fetcher of vendors' photo URLs.

Every URL is hostile: workers sit next to Redis and the database. So the host
is resolved once, every address it resolves to is checked (private, loopback,
link-local, multicast, reserved, and IPv4 hidden inside IPv6), and the
connection goes to the very address that was checked, so a second DNS answer
cannot rebind it. Redirects are followed by hand and each hop is checked from
scratch; the whole fetch runs against one deadline and one byte limit.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections import OrderedDict
from typing import Protocol
from urllib.parse import urljoin

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from imgproc.config import Settings
from imgproc.errors import JobError, PermanentError, TransientError

from .urls import BadUrl, Target, UrlPolicy, is_forbidden, parse_url

MAX_REDIRECTS = 3
#: Kept-alive connection pools, one per checked address and host name (least recently used dropped).
MAX_POOLS = 32
CHUNK_BYTES = 64 * 1024
#: Most of a webhook receiver's answer that is read (and dropped).
REPLY_BYTES = 64 * 1024
USER_AGENT = "imgproc/0.1"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: 4xx answers that may pass: the host's own timeout, or its rate limit.
RETRYABLE_4XX = frozenset({408, 429})


class PhotoFetcher(Protocol):
    """Gets a vendor's photo by URL, bounded in size and time; what a job asks of the network."""

    def fetch(self, url: str) -> bytes:
        """The body at ``url``; ``PermanentError`` / ``TransientError`` with a fetch code when it fails."""
        ...

    def close(self) -> None: ...


def _translate(exc: Exception, host: str) -> JobError:
    """Map a urllib3 or socket error to imgproc's, naming the host and never the URL."""
    if isinstance(exc, NewConnectionError):
        return TransientError(f"cannot connect to {host}", code="fetch_failed")
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return TransientError(f"{host} timed out", code="timeout")
    if isinstance(exc, SSLError):
        return TransientError(f"TLS with {host} failed", code="fetch_failed")
    if isinstance(exc, ProtocolError) and exc.args and isinstance(exc.args[0], str):
        return TransientError(f"connection to {host} broke: {exc.args[0]}", code="fetch_failed")
    return TransientError(f"connection to {host} failed ({type(exc).__name__})", code="fetch_failed")


def _late(host: str, limit: float) -> TransientError:
    return TransientError(f"fetching from {host} took longer than {limit:g}s", code="timeout")


def _remaining(deadline: float, host: str, limit: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _late(host, limit)
    return left


class Fetcher:
    """Fetches photo URLs for the workers: checked, pinned to the checked address, bounded."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.policy = UrlPolicy.from_settings(settings)
        # Connections kept alive between jobs, each pinned to an address checked for that
        # request: a light job spent 40% of its fetch on a new TCP connection (measured).
        self._pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()

    def fetch(self, url: str) -> bytes:
        """Return the body of ``url``, following at most three redirects, each checked anew."""
        deadline = time.monotonic() + self.settings.fetch_deadline
        target = self._target(url, "URL refused")
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._request(target, deadline)
            try:
                if response.status not in REDIRECTS:
                    self._check_status(response.status, target.host)
                    body = self._read_body(response, target.host, deadline)
                    response.release_conn()  # read to the end: the connection may serve the next job
                    return body
                location = (response.headers.get("Location") or "").strip()
                if not location:
                    raise PermanentError(
                        f"redirect without a Location from {target.host}", code="fetch_failed"
                    )
            finally:
                if response.connection is not None:  # not read to the end: never reused
                    response.close()
                    response.release_conn()
            url = urljoin(url, location)
            target = self._target(url, f"redirect from {target.host} refused")
        raise PermanentError(f"too many redirects (last from {target.host})", code="fetch_failed")

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST ``body`` to ``url`` within ``timeout`` seconds; the answer's status (redirects not followed).

        The URL passes the same checks as a photo's (private, loopback and metadata
        addresses refused unless allow-listed) and the connection goes to the checked
        address. The answer's body is read (at most 64 KiB) and dropped.
        """
        deadline = time.monotonic() + timeout
        target = self._target(url, "URL refused")
        response = self._request(target, deadline, "POST", body, headers, timeout)
        try:
            left = REPLY_BYTES
            while left > 0 and (chunk := response.read1(min(CHUNK_BYTES, left))):
                left -= len(chunk)
            if left > 0:
                response.release_conn()  # read to the end: the connection may serve the next delivery
            return response.status
        except (HTTPError, OSError) as exc:
            raise _translate(exc, target.host) from exc
        finally:
            if response.connection is not None:
                response.close()
                response.release_conn()

    def _target(self, url: str, refusal: str) -> Target:
        try:
            target = parse_url(url)
            self.policy.check_port(target)
            return target
        except BadUrl as exc:
            raise PermanentError(f"{refusal}: {exc}", code="fetch_forbidden") from None

    def _resolve(self, target: Target, deadline: float, limit: float | None = None) -> list[str]:
        """Resolve the host once and refuse it if any address is forbidden and not allow-listed."""
        host = target.host
        _remaining(deadline, host, self.settings.fetch_deadline if limit is None else limit)
        try:
            infos = socket.getaddrinfo(host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TransientError(f"cannot resolve {host}", code="fetch_failed") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise TransientError(f"cannot resolve {host}", code="fetch_failed")
        if self.policy.allowed.allows_name(host, target.port):
            return addresses
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if is_forbidden(ip) and not self.policy.allowed.allows_ip(ip, target.port):
                where = host if host == str(ip) else f"{host} ({ip})"
                # Name the setting: a newcomer's first local photo server lands here.
                raise PermanentError(
                    f"{where} is a private, loopback or reserved address; "
                    "allow it with IMGPROC_FETCH_ALLOW_HOSTS",
                    code="fetch_forbidden",
                )
        return addresses

    def _request(
        self,
        target: Target,
        deadline: float,
        method: str = "GET",
        body: bytes | None = None,
        extra: dict[str, str] | None = None,
        limit: float | None = None,
    ):
        """Send the request to each checked address in turn until one connects; return the response."""
        limit = self.settings.fetch_deadline if limit is None else limit
        addresses = self._resolve(target, deadline, limit)
        headers = {
            "Host": target.host_header,
            "User-Agent": USER_AGENT,
            # Compressed bodies would be inflated past the byte count; images are compressed anyway.
            "Accept-Encoding": "identity",
            **(extra or {}),
        }
        failure: Exception | None = None
        for address in addresses:
            left = _remaining(deadline, target.host, limit)
            timeout = urllib3.Timeout(
                connect=min(self.settings.fetch_connect_timeout, left),
                read=min(self.settings.fetch_read_timeout, left),
            )
            key = (target.scheme, target.host, address, target.port)
            for fresh in (key not in self._pools, True):
                pool = self._pool(key)
                try:
                    return pool.urlopen(
                        method,
                        target.path,
                        body=body,
                        headers=headers,
                        retries=False,
                        redirect=False,
                        timeout=timeout,
                        preload_content=False,
                        decode_content=False,
                    )
                except ConnectTimeoutError as exc:  # NewConnectionError too: try the next address
                    self._drop(key)
                    failure = exc
                    break
                except (HTTPError, OSError) as exc:
                    self._drop(key)
                    if not fresh and isinstance(exc, ProtocolError):
                        continue  # a kept-alive connection the server had closed: once more on a new one
                    raise _translate(exc, target.host) from exc
                except BaseException:
                    self._drop(key)
                    raise
        assert failure is not None
        raise _translate(failure, target.host) from failure

    def _pool(self, key: tuple) -> urllib3.HTTPConnectionPool:
        """The pool of one checked address, connecting to the address itself (never resolving again)."""
        pool = self._pools.get(key)
        if pool is not None:
            self._pools.move_to_end(key)
            return pool
        scheme, host, address, port = key
        if scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address, port, maxsize=1, retries=False, server_hostname=host, assert_hostname=host
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, maxsize=1, retries=False)
        self._pools[key] = pool
        while len(self._pools) > MAX_POOLS:
            self._pools.popitem(last=False)[1].close()
        return pool

    def _drop(self, key: tuple) -> None:
        pool = self._pools.pop(key, None)
        if pool is not None:
            pool.close()

    def close(self) -> None:
        """Close every kept-alive connection."""
        while self._pools:
            self._pools.popitem()[1].close()

    @staticmethod
    def _check_status(status: int, host: str) -> None:
        if 200 <= status < 300:
            return
        message = f"HTTP {status} from {host}"
        if status >= 500 or status in RETRYABLE_4XX:
            raise TransientError(message, code="fetch_failed")
        raise PermanentError(message, code="fetch_failed")

    def _read_body(self, response, host: str, deadline: float) -> bytes:
        """Stream the body in chunks, refusing it once it passes ``max_image_bytes`` or the deadline."""
        limit = self.settings.max_image_bytes
        declared = (response.headers.get("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise PermanentError(
                f"{host} announces {int(declared)} bytes; the limit is {limit}", code="image_too_large"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            left = _remaining(deadline, host, self.settings.fetch_deadline)
            try:
                # A slow drip keeps each read under the read timeout; bound each
                # read by what is left of the deadline as well.
                sock = getattr(response.connection, "sock", None)
                if sock is not None:
                    sock.settimeout(min(self.settings.fetch_read_timeout, left))
                chunk = response.read1(CHUNK_BYTES)
            except (HTTPError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise _late(host, self.settings.fetch_deadline) from exc
                raise _translate(exc, host) from exc
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise PermanentError(f"{host} sent more than {limit} bytes", code="image_too_large")
            chunks.append(chunk)
