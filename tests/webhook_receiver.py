"""A local webhook receiver for the tests: records every POST, answers as a script says."""

from __future__ import annotations

import http.server
import threading
import time


class Receiver:
    """``Receiver(statuses=[500, 500, 200])``: answers each POST with the next status (the last one after)."""

    def __init__(
        self,
        statuses: list[int] | None = None,
        delay: float = 0.0,
        bind: str = "127.0.0.1",
        name: str = "127.0.0.1",
    ):
        self.statuses = list(statuses or [200])
        self.delay = delay
        self.received: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(
                    {"headers": dict(self.headers), "body": body, "at": time.monotonic(), "wall": time.time()}
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((bind, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]
        self.url = f"http://{name}:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
