"""A local server that speaks Cloudinary's upload API, for tests of CloudinaryStorage.

It checks signatures the way Cloudinary does, so a test through the real SDK
proves that the request was signed with the right secret, and it serves what
it stored at the returned ``secure_url``. ``fail_next`` and ``delay_next``
make it answer like a failing or slow Cloudinary.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

#: Fields Cloudinary leaves out of the string to sign.
UNSIGNED_FIELDS = {"file", "api_key", "resource_type", "cloud_name", "signature"}

#: How old a request's timestamp may be, as on Cloudinary.
MAX_AGE_S = 3600

#: Messages Cloudinary answers with, for fail_next.
_MESSAGES = {
    400: "Invalid image file",
    401: "Invalid api_key",
    403: "Forbidden",
    420: "Rate Limit Exceeded",
    429: "Rate Limit Exceeded",
    500: "General Error",
    503: "Service Unavailable",
}

_UPLOAD_PATH = re.compile(r"/v1_1/(?P<cloud>[^/]+)/(?P<kind>image|raw)/upload")
_DELIVERY_PATH = re.compile(r"/(?P<cloud>[^/]+)/image/upload/(?:v\d+/)?(?P<public_id>.+)\.\w+")
#: A raw file (not an image) is delivered under its public_id, which holds its extension.
_RAW_PATH = re.compile(r"/(?P<cloud>[^/]+)/raw/upload/(?:v\d+/)?(?P<public_id>.+)")


@dataclass
class Upload:
    """One upload the stub accepted: its public_id, form fields (file excluded) and bytes."""

    public_id: str
    params: dict[str, str]
    data: bytes
    response: dict = field(default_factory=dict)


def sign(params: dict[str, str], api_secret: str, algorithm: str = "sha1") -> str:
    """Return Cloudinary's signature of ``params`` (signature version 2)."""
    pairs = sorted(
        f"{k}={v}".replace("&", "%26") for k, v in params.items() if v and k not in UNSIGNED_FIELDS
    )
    return hashlib.new(algorithm, ("&".join(pairs) + api_secret).encode()).hexdigest()


def parse_multipart(content_type: str, body: bytes) -> dict[str, list[bytes]]:
    """Return the values of each field of a multipart/form-data body, byte for byte."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        raise ValueError("not multipart/form-data")
    delimiter = b"--" + match.group(1).encode()
    fields: dict[str, list[bytes]] = {}
    # Parts sit between delimiters; the first chunk is the preamble, the last the epilogue.
    for part in body.split(delimiter)[1:-1]:
        head, _, value = part[2:].partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if name is None:
            raise ValueError("a part has no name")
        fields.setdefault(name.group(1).decode(), []).append(value[:-2])  # drop the CRLF
    return fields


class CloudinaryStub:
    """Cloudinary's upload API on 127.0.0.1, in a background thread; use it as a context manager."""

    def __init__(
        self,
        api_key: str = "614335564976464",
        api_secret: str = "stub-Secret_0123456789abcdefXYZ",
        cloud_name: str = "stubcloud",
        signature_algorithm: str = "sha1",
    ):
        self.api_key = api_key
        self.api_secret = api_secret
        self.cloud_name = cloud_name
        self.signature_algorithm = signature_algorithm
        #: Accepted uploads, oldest first.
        self.uploads: list[Upload] = []
        #: Refused uploads as (status, message), oldest first.
        self.rejections: list[tuple[int, str]] = []
        self._files: dict[str, Upload] = {}
        self._fail: list[tuple[int, str]] = []
        self._delay: list[float] = []
        self._version = int(time.time())
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> CloudinaryStub:
        """Start serving on a free port."""
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.stub = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (later connections are refused) and cut any delay short."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = None

    def __enter__(self) -> CloudinaryStub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The ``cloudinary://`` URL that points the SDK at this stub."""
        return (
            f"cloudinary://{self.api_key}:{self.api_secret}@{self.cloud_name}?upload_prefix={self.base_url}"
        )

    # --- failure controls ---------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, message: str | None = None) -> None:
        """Answer the next ``n`` uploads with ``status`` and a Cloudinary-style error body."""
        message = message or _MESSAGES.get(status, f"Stub failure {status}")
        with self._lock:
            self._fail.extend([(status, message)] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        """Sleep ``seconds`` before answering each of the next ``n`` uploads."""
        with self._lock:
            self._delay.extend([seconds] * n)

    def _pop(self, queue: list):
        with self._lock:
            return queue.pop(0) if queue else None

    # --- the API ------------------------------------------------------------

    def handle_upload(
        self, cloud: str, content_type: str, body: bytes, kind: str = "image"
    ) -> tuple[int, dict]:
        """Check and store one upload; return the status and JSON body to answer with."""
        delay = self._pop(self._delay)
        if delay:
            self._stopping.wait(delay)
        failure = self._pop(self._fail)
        if failure:
            return self._reject(*failure)
        if cloud != self.cloud_name:
            return self._reject(401, f"cloud_name {cloud} is disabled or does not exist")
        try:
            raw = parse_multipart(content_type, body)
        except ValueError as exc:
            return self._reject(400, f"Bad request body: {exc}")
        data = b"".join(raw.pop("file", []))
        params = {}
        for name, values in raw.items():
            # The SDK sends lists as name[] and signs them as name=a,b.
            params[name.removesuffix("[]")] = ",".join(v.decode() for v in values)
        if params.get("api_key") != self.api_key:
            return self._reject(401, f"Unknown API key {params.get('api_key')}")
        timestamp = params.get("timestamp", "")
        if not timestamp.isdigit():
            return self._reject(400, "Missing required parameter - timestamp")
        if int(timestamp) < time.time() - MAX_AGE_S:
            return self._reject(400, f"Stale request - reported time is {timestamp}")
        expected = sign(params, self.api_secret, self.signature_algorithm)
        if params.get("signature") != expected:
            to_sign = "&".join(
                sorted(f"{k}={v}" for k, v in params.items() if v and k not in UNSIGNED_FIELDS)
            )
            # Real Cloudinary echoes the signature it got and the string it signed.
            return self._reject(
                401, f"Invalid Signature {params.get('signature')}. String to sign - '{to_sign}'."
            )
        if not data:
            return self._reject(400, "Missing required parameter - file")
        width = height = None
        fmt = ""
        if kind == "image":
            try:
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
                    fmt = {"JPEG": "jpg"}.get(image.format, image.format.lower())
            except Exception:
                return self._reject(400, "Invalid image file")
        public_id = params.get("public_id") or f"stub{len(self.uploads)}"
        with self._lock:
            self._version += 1
            version = self._version
        if kind == "raw":  # Cloudinary's raw files: no format of their own, the extension in the public_id
            delivery = f"{self.base_url}/{cloud}/raw/upload/v{version}/{public_id}"
        else:
            delivery = f"{self.base_url}/{cloud}/image/upload/v{version}/{public_id}.{fmt}"
        response = {
            "public_id": public_id,
            "version": version,
            "signature": hashlib.sha1(f"{public_id}{version}".encode()).hexdigest(),
            "width": width,
            "height": height,
            "format": fmt,
            "resource_type": kind,
            "type": "upload",
            "bytes": len(data),
            "url": delivery,
            "secure_url": delivery,
            "overwritten": public_id in self._files,
        }
        upload = Upload(public_id, params, data, response)
        with self._lock:
            self.uploads.append(upload)
            self._files[public_id] = upload
        return 200, response

    def _reject(self, status: int, message: str) -> tuple[int, dict]:
        with self._lock:
            self.rejections.append((status, message))
        return status, {"error": {"message": message}}

    def stored(self, public_id: str) -> Upload | None:
        """Return the upload now stored under ``public_id``, or None."""
        with self._lock:
            return self._files.get(public_id)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: CloudinaryStub

    def handle_error(self, request, client_address):
        # A client that timed out and hung up is expected here, not an error to print.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self):
        match = _UPLOAD_PATH.fullmatch(self.path)
        if not match:
            self._send(404, {"error": {"message": "Not found"}})
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, answer = self.server.stub.handle_upload(
            match["cloud"], self.headers.get("Content-Type", ""), body, match["kind"]
        )
        self._send(status, answer)

    def do_GET(self):
        match = _DELIVERY_PATH.fullmatch(self.path) or _RAW_PATH.fullmatch(self.path)
        upload = match and self.server.stub.stored(match["public_id"])
        if not upload:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        fmt = upload.response["format"]
        self.send_header(
            "Content-Type", "image/" + fmt.replace("jpg", "jpeg") if fmt else "application/octet-stream"
        )
        self.send_header("Content-Length", str(len(upload.data)))
        self.end_headers()
        self.wfile.write(upload.data)

    def _send(self, status: int, answer: dict):
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass
