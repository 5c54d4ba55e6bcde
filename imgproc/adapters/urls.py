"""Which URLs imgproc may reach: parsed strictly, and every address checked against the private ranges.

Photo URLs (``imgproc.adapters.fetch``) and webhook URLs (the API at
enqueue, the fetcher at delivery) pass the same checks.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from imgproc.config import Settings
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


def check_webhook_url(url: str, policy: UrlPolicy) -> str:
    """``check_url``, and a service port or a private, loopback or reserved address literal refused at once.

    A host name is checked when it is resolved, at each delivery (a name can
    change its address); an address literal cannot, so it is refused here.
    """
    try:
        target = parse_url(url)
        policy.check_port(target)
    except BadUrl as exc:
        raise InvalidRequest(f"webhook_url: {exc}") from None
    try:
        ip = ipaddress.ip_address(target.host)
    except ValueError:
        return url
    if is_forbidden(ip) and not policy.allowed.allows(target.host, ip, target.port):
        raise InvalidRequest(
            "webhook_url: a private, loopback or reserved address is not allowed "
            "(allow it with IMGPROC_FETCH_ALLOW_HOSTS)"
        )
    return url


_WITH_PORT = re.compile(r"(?P<host>\[[^\]]+\]|[^:]+):(?P<port>\d{1,5})")


class AllowList:
    """``IMGPROC_FETCH_ALLOW_HOSTS``: host names and networks a URL may reach although they are private.

    An entry with a port (``127.0.0.1:8080``, ``10.0.0.0/8:443``, ``[::1]:8080``)
    opens that port only; one without opens every port but the blocked ones.
    """

    def __init__(self, entries: tuple[str, ...]):
        names: dict[str, set[int] | None] = {}
        nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for entry in entries:
            entry = entry.strip().lower()
            port = None
            # A bare IPv6 address has colons of its own: only [v6]:port carries a port.
            if match := _WITH_PORT.fullmatch(entry):
                entry, port = match["host"], int(match["port"])
            try:
                nets.append((ipaddress.ip_network(entry.strip("[]"), strict=False), port))
            except ValueError:
                name = entry.rstrip(".")
                if port is None:
                    names[name] = None
                elif names.get(name, set()) is not None:
                    names.setdefault(name, set()).add(port)
        self.names = names
        self.nets = tuple(nets)

    def allows_name(self, host: str, port: int) -> bool:
        name = host.rstrip(".")
        return name in self.names and (self.names[name] is None or port in self.names[name])

    def allows_ip(self, ip: IPAddress, port: int) -> bool:
        candidates = [ip] if ip.version == 4 or ip.ipv4_mapped is None else [ip, ip.ipv4_mapped]
        return any(c in net and p in (None, port) for c in candidates for net, p in self.nets)

    def allows(self, host: str, ip: IPAddress, port: int) -> bool:
        return self.allows_name(host, port) or self.allows_ip(ip, port)


_DEFAULT_DB_PORTS = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432, "mssql": 1433, "oracle": 1521}


def own_service_ports(settings: Settings) -> set[int]:
    """The ports of imgproc's own Redis and database: never reachable through a vendor's URL."""
    ports = set()
    redis_url = urlsplit(settings.redis_url)
    if redis_url.scheme in ("redis", "rediss"):
        try:
            ports.add(redis_url.port or 6379)
        except ValueError:
            pass
    for sentinel in settings.redis_sentinels:  # host:port; 26379 when left out
        port = sentinel.rpartition("]")[2].rpartition(":")[2]
        ports.add(int(port) if port.isdigit() else 26379)
    try:
        db_url = make_url(settings.database_url)
    except ArgumentError:
        return ports
    default = _DEFAULT_DB_PORTS.get(db_url.get_backend_name())
    if db_url.port or default:
        ports.add(db_url.port or default)
    return ports


class UrlPolicy:
    """Where a vendor's URL (photo or webhook) may go: the allow-list, and the ports nothing reaches."""

    def __init__(
        self, allow_hosts: tuple[str, ...] = (), blocked_ports: set[int] | frozenset[int] = frozenset()
    ):
        self.allowed = AllowList(allow_hosts)
        self.blocked_ports = frozenset(blocked_ports)

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        return cls(
            settings.fetch_allow_hosts, set(settings.fetch_blocked_ports) | own_service_ports(settings)
        )

    def check_port(self, target: Target) -> None:
        """Raise ``BadUrl`` when ``target`` names a blocked port: checked before any name is resolved."""
        if target.port in self.blocked_ports:
            raise BadUrl(
                f"port {target.port} belongs to a service (database, cache, mail) imgproc never calls"
            )


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
