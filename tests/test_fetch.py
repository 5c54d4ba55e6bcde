"""The fetcher against the ``photo_server`` fixture: allow-list, forbidden addresses, redirects, limits."""

from __future__ import annotations

import socket
import time

import pytest

from imgproc.adapters.fetch import Fetcher
from imgproc.adapters.urls import UrlPolicy, check_url, check_webhook_url
from imgproc.errors import InvalidRequest, PermanentError, TransientError

PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


@pytest.fixture
def fast(settings):
    """Settings allowing 127.0.0.1 only, with timeouts small enough for tests."""
    return settings.replace(
        fetch_connect_timeout=0.5, fetch_read_timeout=1.0, fetch_deadline=1.5, max_image_bytes=100_000
    )


def fetch_error(settings, url):
    with pytest.raises((PermanentError, TransientError)) as info:
        Fetcher(settings).fetch(url)
    return info.value


def test_fetches_a_served_photo_with_its_own_host_header(fast, photo_server):
    photo_server.serve("/cat.png", PHOTO)
    assert Fetcher(fast).fetch(photo_server.url("/cat.png?size=large")) == PHOTO
    headers = photo_server.headers["/cat.png"]
    assert headers["User-Agent"] == "imgproc/0.1"
    assert headers["Host"] == f"127.0.0.1:{photo_server.port}"


def test_loopback_is_forbidden_without_the_allow_list(fast, photo_server):
    photo_server.serve("/cat.png", PHOTO)
    error = fetch_error(fast.replace(fetch_allow_hosts=()), photo_server.url("/cat.png"))
    assert isinstance(error, PermanentError) and error.code == "fetch_forbidden"
    assert photo_server.hits["/cat.png"] == 0
    # The refusal names the setting that would allow it (a newcomer's local photo server meets it first).
    assert error.message == (
        "127.0.0.1 is a private, loopback or reserved address; allow it with IMGPROC_FETCH_ALLOW_HOSTS"
    )


@pytest.mark.parametrize("allow", [("127.0.0.0/8",), ("localhost",), ("LOCALHOST.",)])
def test_allow_list_takes_cidrs_and_host_names(fast, photo_server, allow):
    photo_server.serve("/cat.png", PHOTO)
    url = f"http://localhost:{photo_server.port}/cat.png"
    assert Fetcher(fast.replace(fetch_allow_hosts=allow)).fetch(url) == PHOTO


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/cat.png",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.100.100.200/latest/meta-data/",  # shared address space, a cloud's metadata
        "http://[::1]/cat.png",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://localhost/cat.png",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::]/",
    ],
)
def test_private_and_reserved_addresses_are_forbidden(fast, url):
    started = time.monotonic()
    error = fetch_error(fast.replace(fetch_allow_hosts=()), url)
    assert isinstance(error, PermanentError) and error.code == "fetch_forbidden"
    assert time.monotonic() - started < 0.5


def test_allow_list_for_one_address_does_not_open_others(fast):
    error = fetch_error(fast, "http://10.0.0.1/cat.png")
    assert error.code == "fetch_forbidden"


def test_every_resolved_address_is_checked(fast, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "photo_server.example":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 80)),
            ]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    error = fetch_error(fast, "http://photo_server.example/cat.png")
    assert error.code == "fetch_forbidden" and "10.0.0.1" in error.message


def test_connects_to_the_checked_address_without_resolving_again(fast, photo_server, monkeypatch):
    """DNS rebinding: a second lookup would answer 10.0.0.1, so there must be no second lookup."""
    photo_server.serve("/cat.png", PHOTO)
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1", "10.0.0.1"])
    lookups = []

    def resolve(host, port, *args, **kwargs):
        if host == "photo_server.example":
            lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert Fetcher(fast).fetch(f"http://photo_server.example:{photo_server.port}/cat.png") == PHOTO
    assert lookups == ["photo_server.example"]
    assert photo_server.headers["/cat.png"]["Host"] == f"photo_server.example:{photo_server.port}"


def test_redirects_are_followed_relative_to_the_current_url(fast, photo_server):
    photo_server.serve("/photo_server/cat.png", PHOTO)
    photo_server.redirect("/a", "/b", status=301)
    photo_server.redirect("/b", "photo_server/cat.png", status=307)
    assert Fetcher(fast).fetch(photo_server.url("/a")) == PHOTO
    assert photo_server.hits["/photo_server/cat.png"] == 1


def test_redirect_to_a_host_outside_the_allow_list_is_forbidden(fast, photo_server):
    # The server is allowed by name only; 127.0.0.1 itself is loopback, hence forbidden.
    photo_server.serve("/target", PHOTO)
    photo_server.redirect("/start", photo_server.url("/target"))
    settings = fast.replace(fetch_allow_hosts=("localhost",))
    error = fetch_error(settings, f"http://localhost:{photo_server.port}/start")
    assert error.code == "fetch_forbidden" and "127.0.0.1" in error.message
    assert photo_server.hits["/start"] == 1
    assert photo_server.hits["/target"] == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/",
        "http://[::1]:9/",
        "ftp://127.0.0.1/cat.png",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http://user:pass@127.0.0.1/",
    ],
)
def test_redirect_to_a_forbidden_target_is_forbidden(fast, photo_server, location):
    photo_server.redirect("/start", location)
    error = fetch_error(fast, photo_server.url("/start"))
    assert isinstance(error, PermanentError) and error.code == "fetch_forbidden"


def test_three_redirects_are_fine_four_are_too_many(fast, photo_server):
    photo_server.serve("/photo", PHOTO)
    for i in range(3):
        photo_server.redirect(f"/r{i}", f"/r{i + 1}")
    photo_server.redirect("/r3", "/photo")
    assert Fetcher(fast).fetch(photo_server.url("/r1")) == PHOTO
    error = fetch_error(fast, photo_server.url("/r0"))
    assert isinstance(error, PermanentError) and error.code == "fetch_failed"
    assert "too many redirects" in error.message
    assert photo_server.hits["/photo"] == 1


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_are_transient(fast, photo_server, status):
    photo_server.serve("/cat.png", PHOTO)
    photo_server.fail_next("/cat.png", 1, status=status)
    error = fetch_error(fast, photo_server.url("/cat.png"))
    assert isinstance(error, TransientError) and error.code == "fetch_failed"
    assert error.message == f"HTTP {status} from 127.0.0.1"
    assert Fetcher(fast).fetch(photo_server.url("/cat.png")) == PHOTO  # the retry succeeds


@pytest.mark.parametrize("status", [404, 403, 410, 400])
def test_client_errors_are_permanent(fast, photo_server, status):
    photo_server.serve("/cat.png", b"nope", status=status)
    error = fetch_error(fast, photo_server.url("/cat.png"))
    assert isinstance(error, PermanentError) and error.code == "fetch_failed"


def test_messages_name_the_host_but_not_the_query(fast, photo_server):
    url = photo_server.url("/missing.png?token=s3cret")
    error = fetch_error(fast, url)
    assert "127.0.0.1" in error.message and "s3cret" not in error.message
    error = fetch_error(fast.replace(fetch_allow_hosts=()), url)
    assert "127.0.0.1" in error.message and "s3cret" not in error.message


def test_connection_refused_is_transient(fast):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = fetch_error(fast, f"http://127.0.0.1:{port}/cat.png")
    assert isinstance(error, TransientError) and error.code == "fetch_failed"


def test_dns_failure_is_transient(fast, monkeypatch):
    def resolve(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    error = fetch_error(fast, "http://photo_server.example/cat.png")
    assert isinstance(error, TransientError) and error.code == "fetch_failed"
    assert "photo_server.example" in error.message


def test_slow_drip_is_cut_at_the_deadline(fast, photo_server):
    photo_server.slow_drip("/slow.png", total_bytes=10_000, chunk=10, interval=0.2)
    started = time.monotonic()
    error = fetch_error(fast, photo_server.url("/slow.png"))
    elapsed = time.monotonic() - started
    assert isinstance(error, TransientError) and error.code == "timeout"
    assert fast.fetch_deadline - 0.1 < elapsed < fast.fetch_deadline + 1.0


def test_endless_body_is_cut_at_max_image_bytes(fast, photo_server):
    photo_server.endless("/endless.png")
    started = time.monotonic()
    error = fetch_error(fast, photo_server.url("/endless.png"))
    assert isinstance(error, PermanentError) and error.code == "image_too_large"
    assert time.monotonic() - started < 1.0


def test_content_length_over_the_cap_is_refused_before_the_body(fast, photo_server):
    # The body is shorter than announced: reading it would end in fetch_failed instead.
    photo_server.serve("/huge.png", b"x" * 10, headers={"Content-Length": str(10**9)})
    error = fetch_error(fast, photo_server.url("/huge.png"))
    assert isinstance(error, PermanentError) and error.code == "image_too_large"


def test_truncated_body_is_transient(fast, photo_server):
    photo_server.serve("/short.png", b"x" * 10, headers={"Content-Length": "500"})
    error = fetch_error(fast, photo_server.url("/short.png"))
    assert isinstance(error, TransientError) and error.code == "fetch_failed"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cat.png",
        "https://EXAMPLE.com:8443/a/b.jpg?x=1&y=2",
        "http://[2001:db8::1]/cat.png",
        "https://bücher.example/katze.jpg",
    ],
)
def test_check_url_accepts_absolute_http_urls(url):
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/cat.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//example.com/cat.png",
        "/cat.png",
        "http:///cat.png",
        "http://user:pass@example.com/",
        "http://example.com@10.0.0.1/",
        "http://example.com\\@10.0.0.1/",
        "http://exa mple.com/",
        "http://example.com/\ncat.png",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://[::1/",
        "http://exa%6dple.com/",
        "http://" + "a" * 2050 + ".com/",
        "http://example.com/" + "a" * 2048,
    ],
)
def test_check_url_refuses_anything_else(url):
    with pytest.raises(InvalidRequest) as info:
        check_url(url)
    assert "s3cret" not in info.value.message


def test_a_private_webhook_address_names_the_setting_that_allows_it():
    with pytest.raises(InvalidRequest) as info:
        check_webhook_url("http://127.0.0.1:9000/hook", UrlPolicy())
    assert "IMGPROC_FETCH_ALLOW_HOSTS" in info.value.message
    assert check_webhook_url("http://127.0.0.1:9000/hook", UrlPolicy(("127.0.0.1:9000",)))


class KeepAliveServer:
    """An HTTP/1.1 server that counts connections; ``drop_after`` closes each after that many answers."""

    def __init__(self, drop_after: int = 0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                server.connections += 1
                self.answered = 0

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(PHOTO)))
                self.end_headers()
                self.wfile.write(PHOTO)
                self.answered += 1
                # Closes without saying so, as a server whose keep-alive timeout passed.
                self.close_connection = drop_after > 0 and self.answered >= drop_after

            def log_message(self, *args):
                pass

        self.connections = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/p.png"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("drop_after, connections", [(0, 1), (1, 3)])
def test_connections_are_kept_alive_between_fetches_and_renewed_when_dropped(fast, drop_after, connections):
    server = KeepAliveServer(drop_after)
    fetcher = Fetcher(fast)
    try:
        for _ in range(3):
            assert fetcher.fetch(server.url) == PHOTO
            time.sleep(0.05)  # lets a dropping server close before the next fetch
    finally:
        fetcher.close()
        server.close()
    assert server.connections == connections


def test_a_refused_body_never_goes_back_to_the_pool(fast, photo_server):
    photo_server.serve("/big.png", PHOTO, headers={"Content-Length": "999999999"})
    fetcher = Fetcher(fast)
    with pytest.raises(PermanentError, match="announces"):
        fetcher.fetch(photo_server.url("/big.png"))
    photo_server.serve("/cat.png", PHOTO)
    assert fetcher.fetch(photo_server.url("/cat.png")) == PHOTO
    fetcher.close()
