"""Photos for a local stack: an HTTP server of photo URLs, and sample photos from scikit-image.

    with PhotoServer() as photos:
        photos.serve("/cat.jpg", jpeg_bytes)
        photos.fail_next("/cat.jpg", 2)          # two 500s, then the photo
        fetch(photos.url("/cat.jpg"))
        assert photos.hits["/cat.jpg"] == 3

    PhotoServer(lambda path: body_or_none, keep_alive=True)   every other path answered by a function

Routes match the path without its query; ``resolve`` gets the whole path. By default it speaks
HTTP/1.0, so every response closes its connection and a body without Content-Length simply runs
until the server stops sending; ``keep_alive`` speaks HTTP/1.1 and keeps connections open, as a
CDN does (the bench's fetches then measure no connection set-up).
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Route = Callable[[BaseHTTPRequestHandler], None]


class PhotoServer:
    """Serves photo URLs from a background thread, from its start; ``close()`` (or the ``with``) stops it.

    ``bind`` and ``name``: where it listens and the host its URLs name (0.0.0.0 and
    host.containers.internal for containers, which reach the host's addresses but not its loopback).
    """

    def __init__(
        self,
        resolve: Callable[[str], bytes | None] | None = None,
        *,
        bind: str = "127.0.0.1",
        name: str = "127.0.0.1",
        keep_alive: bool = False,
    ):
        self.name = name
        self.resolve = resolve
        self.hits: Counter[str] = Counter()
        #: Headers of the latest request to each path.
        self.headers: dict[str, Message] = {}
        self._routes: dict[str, Route] = {}
        self._failures: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"protocol_version": "HTTP/1.1" if keep_alive else "HTTP/1.0"})
        self._httpd = ThreadingHTTPServer((bind, 0), handler)
        # A kept-alive connection holds its thread until the client hangs up: closing must not wait for it.
        self._httpd.daemon_threads = keep_alive
        self._httpd.photos = self
        # A short poll keeps shutdown, which waits for the next poll, quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="photo-server"
        )
        self._thread.start()

    def __enter__(self) -> PhotoServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base(self) -> str:
        return f"http://{self.name}:{self.port}"

    def url(self, path: str) -> str:
        """Return the absolute URL of ``path`` on this server."""
        return self.base + path

    def serve(self, path: str, body: bytes, status: int = 200, headers: dict | None = None) -> None:
        """Answer ``path`` with ``body``; ``headers`` may override Content-Length."""
        self._routes[path] = lambda handler: _respond(handler, status, body, headers)

    def fail_next(self, path: str, n: int, status: int = 500) -> None:
        """Answer the next ``n`` requests to ``path`` with ``status``, then serve it normally."""
        with self._lock:
            self._failures[path] = (n, status)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer ``path`` with a redirect to ``location``, kept as given (relative or absolute)."""
        self._routes[path] = lambda handler: _respond(handler, status, b"", {"Location": location})

    def slow_drip(self, path: str, total_bytes: int, chunk: int = 10, interval: float = 0.5) -> None:
        """Announce ``total_bytes`` and send them ``chunk`` bytes every ``interval`` seconds."""

        def drip(handler: BaseHTTPRequestHandler) -> None:
            _start(handler, 200, {"Content-Length": str(total_bytes)})
            sent = 0
            while sent < total_bytes and not self._stopping.wait(interval if sent else 0):
                piece = b"x" * min(chunk, total_bytes - sent)
                handler.wfile.write(piece)
                handler.wfile.flush()
                sent += len(piece)

        self._routes[path] = drip

    def endless(self, path: str) -> None:
        """Stream bytes at ``path`` without Content-Length until the client hangs up."""

        def stream(handler: BaseHTTPRequestHandler) -> None:
            _start(handler, 200, {})
            block = b"x" * 65536
            while not self._stopping.is_set():
                handler.wfile.write(block)

        self._routes[path] = stream

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        with self._lock:
            self.hits[path] += 1
            self.headers[path] = handler.headers
            remaining, status = self._failures.get(path, (0, 0))
            if remaining:
                self._failures[path] = (remaining - 1, status)
        route = self._routes.get(path)
        try:
            if remaining:
                _respond(handler, status, b"failure")
            elif route is not None:
                route(handler)
            elif self.resolve is not None:
                body = self.resolve(handler.path)
                _respond(
                    handler, 200 if body is not None else 404, body or b"", {"Content-Type": "image/jpeg"}
                )
            else:
                _respond(handler, 404, b"not found")
        except ConnectionError:
            pass  # the client hung up, as fetchers refusing a body do


class _Handler(BaseHTTPRequestHandler):
    """Hands every GET to the PhotoServer that owns the listening socket."""

    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

    def do_GET(self) -> None:
        self.server.photos._handle(self)

    def log_message(self, format: str, *args) -> None:
        pass  # keep the output quiet


def _start(handler: BaseHTTPRequestHandler, status: int, headers: dict) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()


def _respond(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None) -> None:
    _start(handler, status, {"Content-Length": str(len(body)), **(headers or {})})
    handler.wfile.write(body)


def sample_photos() -> dict[str, bytes]:
    """astronaut() (a face), a two-person composite, and coffee() (no face), as JPEG bytes."""
    from PIL import Image
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    composite = Image.new("RGB", (1024, 512), (200, 200, 200))
    composite.paste(astronaut, (0, 0))  # the larger face, on the left
    composite.paste(astronaut.resize((320, 320)), (600, 150))
    photos = {}
    for name, img in (
        ("astronaut", astronaut),
        ("two-people", composite),
        ("coffee", Image.fromarray(data.coffee())),
    ):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        photos[name] = buf.getvalue()
    return photos
