"""The comparison: the same photos through rembg's own server (``rembg s --no-ui``), same model and cores."""

from __future__ import annotations

import http.client
import queue
import sys
import threading
import time
import uuid
from pathlib import Path

from imgproc.testing import StackError, free_port, wait_for

MODEL = "isnet-general-use"
PNG = b"\x89PNG\r\n\x1a\n"


def _multipart(jpeg: bytes) -> tuple[bytes, str]:
    """The form ``POST /api/remove`` takes: the photo as ``file`` and the model's name."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{MODEL}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


class RembgServer:
    """``rembg s --no-ui`` started by the bench's stack, with ``U2NET_HOME`` at imgproc's models folder."""

    def __init__(self, b, threads: int | None):
        self.b = b
        self.port = free_port()
        env = dict(
            b.stack.env, U2NET_HOME=b.settings.models_dir, MODEL_CHECKSUM_DISABLED="1", BROWSER="true"
        )  # its start-up opens a browser; `true` makes that a no-op
        env.pop("OMP_NUM_THREADS", None)
        if threads:
            # rembg's new_session reads OMP_NUM_THREADS for the intra-op threads (its only thread knob).
            env["OMP_NUM_THREADS"] = str(threads)
        rembg = str(Path(sys.executable).parent / "rembg")
        self.proc = b.stack.spawn(
            "rembg",
            [
                rembg,
                "s",
                "--no-ui",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log_level",
                "warning",
            ],
            env,
        )
        wait_for(lambda: self._get("/api") == 200, 120, "rembg's server", [self.proc], interval=0.3)

    def _get(self, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def remove(self, conn: http.client.HTTPConnection, jpeg: bytes) -> None:
        """One background removal over ``conn``; StackError unless a PNG comes back."""
        body, content_type = _multipart(jpeg)
        conn.request("POST", "/api/remove", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200 or not data.startswith(PNG):
            raise StackError(f"rembg answered {response.status}: {data[:200]!r}")

    def run(self, jpeg: bytes, count: int, clients: int) -> float:
        """Seconds for ``count`` uploads of ``jpeg`` by ``clients`` concurrent clients, until all answered."""
        work: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            work.put(jpeg)
        errors: list[str] = []

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            try:
                while True:
                    try:
                        item = work.get_nowait()
                    except queue.Empty:
                        return
                    self.remove(conn, item)
            except Exception as exc:  # reported below
                errors.append(str(exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        if errors:
            raise StackError(f"rembg: {errors[0]}")
        return seconds

    def close(self) -> None:
        self.b.stack.stop([self.proc])


def compare(b, runs: list[tuple[str, int]], clients: int, threads: int | None) -> dict:
    """Images per minute of rembg's server for each (size, count), after one warm-up (its model load)."""
    server = RembgServer(b, threads)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        started = time.perf_counter()
        server.remove(conn, b.photos.data[runs[0][0]])  # rembg builds its session on the first request
        conn.close()
        b.log(f"rembg server: first request (model load + 1 image) {time.perf_counter() - started:.1f} s")
        results = {}
        for size, count in runs:
            seconds = server.run(b.photos.data[size], count, clients)
            results[size] = {
                "photos": count,
                "seconds": round(seconds, 3),
                "images_per_min": round(count / seconds * 60, 2),
            }
            b.log(
                f"rembg server, {count} x {size}, {clients} clients: {seconds:.1f} s = "
                f"{count / seconds * 60:.1f} images/min"
            )
    finally:
        server.close()
    return results
