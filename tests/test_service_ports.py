"""A vendor URL never reaches imgproc's own Redis or database, nor a well-known service port.

With ``IMGPROC_FETCH_ALLOW_HOSTS=127.0.0.1`` (as the README suggests for local
testing) ``http://127.0.0.1:6379/x.jpg`` used to reach imgproc's own Redis:
the worker connected three times. Listeners here count the connections made.
"""

from __future__ import annotations

import socket
import threading

import pytest

from imgproc.adapters.fetch import Fetcher
from imgproc.adapters.urls import AllowList, UrlPolicy, own_service_ports, parse_url
from imgproc.config import SERVICE_PORTS, Settings
from imgproc.errors import PermanentError

LIGHT = "/api/image-queue/process-image-queue"


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections it is offered."""

    def __init__(self, port: int = 0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener():
    made = []

    def make(port: int = 0) -> Listener:
        made.append(Listener(port))
        return made[-1]

    yield make
    for one in made:
        one.close()


def free_service_port() -> int:
    """A port of SERVICE_PORTS that nothing on this machine listens on."""
    for port in (11211, 9200, 27017, 2379, 9092, 5984, 110, 143):
        if port not in SERVICE_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail("no well-known service port is free on 127.0.0.1 to listen on")


def forbidden(settings: Settings, url: str) -> PermanentError:
    with pytest.raises(PermanentError) as info:
        Fetcher(settings).fetch(url)
    assert info.value.code == "fetch_forbidden"
    return info.value


def test_own_redis_port_is_refused_though_the_host_is_allowed(settings, listener):
    own_redis = listener()
    settings = settings.replace(redis_url=f"redis://127.0.0.1:{own_redis.port}/0")
    error = forbidden(settings, f"http://127.0.0.1:{own_redis.port}/x.jpg")
    assert f"port {own_redis.port}" in error.message
    assert own_redis.connections == 0


def test_own_database_port_is_refused_though_the_host_is_allowed(settings, listener):
    own_db = listener()
    settings = settings.replace(database_url=f"mysql+pymysql://app:secret@db.internal:{own_db.port}/app")
    error = forbidden(settings, f"http://127.0.0.1:{own_db.port}/x.jpg")
    assert "secret" not in error.message
    assert own_db.connections == 0


def test_well_known_service_ports_are_refused_for_allowed_hosts(settings, listener):
    memcached_like = listener(free_service_port())
    forbidden(
        settings.replace(fetch_allow_hosts=("127.0.0.0/8", "localhost")),
        f"http://localhost:{memcached_like.port}/",
    )
    assert memcached_like.connections == 0


def test_a_redirect_to_a_service_port_is_refused_before_connecting(settings, photo_server, listener):
    own_redis = listener()
    settings = settings.replace(redis_url=f"redis://127.0.0.1:{own_redis.port}/0")
    photo_server.redirect("/to-redis.jpg", f"http://127.0.0.1:{own_redis.port}/x.jpg")
    error = forbidden(settings, photo_server.url("/to-redis.jpg"))
    assert "redirect" in error.message
    assert own_redis.connections == 0


def test_an_allow_list_entry_with_a_port_opens_that_port_only(settings, photo_server, listener):
    photo_server.serve("/cat.png", b"\x89PNG...")
    other = listener()
    scoped = settings.replace(fetch_allow_hosts=(f"127.0.0.1:{photo_server.port}",))
    assert Fetcher(scoped).fetch(photo_server.url("/cat.png")) == b"\x89PNG..."
    error = forbidden(scoped, f"http://127.0.0.1:{other.port}/cat.png")
    assert "loopback" in error.message
    assert other.connections == 0


@pytest.mark.parametrize(
    ("entry", "host", "ip", "port", "allowed"),
    [
        ("127.0.0.1:8080", "127.0.0.1", "127.0.0.1", 8080, True),
        ("127.0.0.1:8080", "127.0.0.1", "127.0.0.1", 8081, False),
        ("10.0.0.0/8:443", "10.1.2.3", "10.1.2.3", 443, True),
        ("10.0.0.0/8:443", "10.1.2.3", "10.1.2.3", 80, False),
        ("[::1]:8080", "::1", "::1", 8080, True),
        ("::1", "::1", "::1", 9999, True),
        ("fc00::/7", "fc00::5", "fc00::5", 80, True),
        ("intranet.local:8443", "intranet.local", "10.0.0.9", 8443, True),
        ("intranet.local:8443", "intranet.local", "10.0.0.9", 443, False),
        ("intranet.local", "intranet.local", "10.0.0.9", 443, True),
    ],
)
def test_allow_list_entries_may_carry_a_port(entry, host, ip, port, allowed):
    import ipaddress

    assert AllowList((entry,)).allows(host, ipaddress.ip_address(ip), port) is allowed


@pytest.mark.parametrize(
    ("redis_url", "database_url", "ports"),
    [
        ("redis://127.0.0.1:6379/0", "sqlite:///var/imgproc.db", {6379}),
        ("redis://cache:6380/1", "mysql+pymysql://u:p@db/app", {6380, 3306}),
        ("rediss://cache/0", "postgresql://u@db:5433/app", {6379, 5433}),
        ("unix:///run/redis.sock", "mariadb+pymysql://u@db:3307/app", {3307}),
    ],
)
def test_own_service_ports_come_from_the_urls(redis_url, database_url, ports):
    assert own_service_ports(Settings(redis_url=redis_url, database_url=database_url)) == ports


def test_service_ports_are_refused_even_with_an_empty_blocked_list():
    policy = UrlPolicy.from_settings(Settings(fetch_blocked_ports=(), redis_url="redis://r:7000/0"))
    assert policy.blocked_ports == {7000}
    assert Settings.from_env({"IMGPROC_FETCH_BLOCKED_PORTS": "25, 6379"}).fetch_blocked_ports == (25, 6379)
    with pytest.raises(ValueError):
        policy.check_port(parse_url("http://hooks.example.com:7000/h"))


def test_a_job_on_the_real_redis_port_fails_forbidden_at_once(client, vendor_key, work, redis_conn):
    acme = vendor_key("acme")
    answer = client.post(
        LIGHT, json={"record_id": "r", "image_url": "http://127.0.0.1:6379/x.jpg"}, headers=acme
    )
    assert answer.status_code == 202
    work()
    job = client.get(f"/api/image-queue/job/{answer.json['job_id']}", headers=acme).json
    assert job["state"] == "failed"
    assert job["error"]["code"] == "fetch_forbidden"
    assert job["attempts"] == 1, "a refused port is not retried"


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/hook", "http://hooks.example.com:5432/hook"])
def test_a_webhook_url_on_a_service_port_is_refused_at_enqueue(client, vendor_key, url):
    acme = vendor_key("acme")
    body = {"record_id": "r", "image_url": "http://127.0.0.1:9/x.jpg", "webhook_url": url}
    refused = client.post(LIGHT, json=body, headers=acme)
    assert refused.status_code == 400
    assert "webhook_url" in refused.json["error"]["message"] and "port" in refused.json["error"]["message"]
