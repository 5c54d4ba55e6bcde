"""Which URLs imgproc may reach: parsed strictly, and every address checked against the private ranges.

Photo URLs (``imgproc.adapters.fetch``) and webhook URLs (the API at
enqueue, the fetcher at delivery) pass the same checks.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import urlsplit

from imgproc.errors import InvalidRequest

MAX_URL_LENGTH = 2048

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# NAT64 gateways turn 64:ff9b::a9fe:a9fe into 169.254.169.254.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BadUrl(ValueError):
    """Raised when a URL is not one imgproc may fetch; the message never repeats the URL."""


class Target(NamedTuple):
    """One parsed, checked URL: what to resolve, where to connect, what to ask for."""

    scheme: str
    host: str  # ASCII, lower case, IPv6 without brackets
    port: int
    path: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == _DEFAULT_PORTS[self.scheme] else f"{name}:{self.port}"


def parse_url(url: str) -> Target:
    """Split an absolute http(s) URL into a ``Target``, or raise ``BadUrl``."""
    if not isinstance(url, str) or not url:
        raise BadUrl("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise BadUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines, and browsers read "\" as "/":
    # refuse them, so that what is checked is what every parser sees.
    if "\\" in url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise BadUrl("the URL contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadUrl("the URL is malformed") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadUrl(f"scheme {scheme[:20]!r} is not http or https" if scheme else "the URL is not absolute")
    if "@" in parts.netloc:
        raise BadUrl("the URL carries a user name or password")
    if port == 0:
        raise BadUrl("port 0 is not a port")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, _ascii_host(parts.hostname), port or _DEFAULT_PORTS[scheme], path)


def _ascii_host(hostname: str | None) -> str:
    if not hostname:
        raise BadUrl("the URL has no host")
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    try:
        name = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise BadUrl("the host name is not valid") from exc
    if not _HOST_NAME.fullmatch(name):
        raise BadUrl("the host name is not valid")
    return name


def check_url(url: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host, else raise ``InvalidRequest``."""
    try:
        parse_url(url)
    except BadUrl as exc:
        raise InvalidRequest(f"url: {exc}") from None
    return url


def check_webhook_url(url: str, allow_hosts: tuple[str, ...] = ()) -> str:
    """``check_url``, and a private, loopback or reserved address literal refused at once.

    A host name is checked when it is resolved, at each delivery (a name can
    change its address); an address literal cannot, so it is refused here.
    """
    try:
        target = parse_url(url)
    except BadUrl as exc:
        raise InvalidRequest(f"webhook_url: {exc}") from None
    try:
        ip = ipaddress.ip_address(target.host)
    except ValueError:
        return url
    if is_forbidden(ip) and not AllowList(allow_hosts).allows(target.host, ip):
        raise InvalidRequest("webhook_url: a private, loopback or reserved address is not allowed")
    return url


class AllowList:
    """``IMGPROC_FETCH_ALLOW_HOSTS``: host names and networks a URL may reach although they are private."""

    def __init__(self, entries: tuple[str, ...]):
        names, nets = set(), []
        for entry in entries:
            entry = entry.strip().lower()
            try:
                nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.rstrip("."))
        self.names = frozenset(names)
        self.nets = tuple(nets)

    def allows_name(self, host: str) -> bool:
        return host.rstrip(".") in self.names

    def allows_ip(self, ip: IPAddress) -> bool:
        candidates = [ip] if ip.version == 4 or ip.ipv4_mapped is None else [ip, ip.ipv4_mapped]
        return any(c in net for c in candidates for net in self.nets)

    def allows(self, host: str, ip: IPAddress) -> bool:
        return self.allows_name(host) or self.allows_ip(ip)


def is_forbidden(ip: IPAddress) -> bool:
    """Return whether a photo URL must not reach ``ip`` unless it is allow-listed."""
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        if embedded is not None and is_forbidden(embedded):
            return True
        if ip.ipv4_mapped is not None:
            # Python 3.11 calls all of ::ffff:0:0/96 private; judge the IPv4 alone.
            return False
        if ip.is_site_local:
            return True
    # is_global also refuses 100.64.0.0/10, where some clouds keep their metadata service.
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
