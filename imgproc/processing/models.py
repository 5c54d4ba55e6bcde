"""The models a worker holds: loaded once per process at start-up, never per job.

    Matting       the contract of a background-removal model: ``mask(rgb, model)``
    FaceFinder    the contract of a face detector: ``detect(rgb)``, ``landmarks(rgb, face)``, ``close()``
    BackgroundRemover, FaceDetector   the real ones (ONNX Runtime; MediaPipe's BlazeFace and face mesh)

Operations are typed by the contracts, so a test can hand in a fake.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from imgproc.config import Settings
from imgproc.errors import PermanentError
from imgproc.modelfiles import ISNET_MODELS, bg_model_file, face_model_files

from . import devices
from .batching import MicroBatcher
from .crop import Face, merge_faces, windows
from .landmarks import MESH_INPUT, MESH_SCALE, Head, square_to_image, then

log = logging.getLogger(__name__)

# ISNET_MODELS (imgproc.modelfiles): models whose pre/post-processing this module does itself, vectorised
# with OpenCV (rembg's DisSession does the same maths with Pillow LANCZOS and float64, 2-3x slower).
#: Minimum score of a face found in a window of the photo rather than the whole frame.
WINDOW_MIN_CONFIDENCE = 0.8


class Matting(Protocol):
    """A background-removal model: the foreground mask of a photo."""

    def mask(self, rgb: np.ndarray, model: str) -> np.ndarray:
        """The mask (uint8, the height and width of ``rgb``) of an RGB array, by the named model."""
        ...


class FaceFinder(Protocol):
    """A face detector."""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face in an RGB array."""
        ...

    def landmarks(self, rgb: np.ndarray, face: Face, square=None) -> Head:
        """The face mesh of one face, on its box or on ``square`` (centre x, y, side, radians)."""
        ...

    def close(self) -> None: ...


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution provider names for ``auto``, ``cpu`` or ``cuda`` (see ``devices.place``)."""
    return [p[0] if isinstance(p, tuple) else p for p in devices.place(device).providers]


def runtime_session(session):
    """The ONNX Runtime session itself, of a rembg session or of a bare one."""
    return getattr(session, "inner_session", session)


class BackgroundRemover:
    """A session per configured model: ISNet as a bare ONNX Runtime session, others as rembg's."""

    def __init__(self, settings: Settings, workers: int = 1):
        """Load every model of ``settings.bg_models``, with threads for one of ``workers`` on this host."""
        import cv2

        self.settings = settings
        self.placement = devices.place(settings.device)  # IMGPROC_DEVICE=cuda without CUDA stops here
        self.providers = list(self.placement.providers)
        #: The provider each model's session really runs on (its first active one).
        self.active: dict[str, str] = {}
        self.batchers: dict[str, MicroBatcher] = {}
        # rembg finds model files through U2NET_HOME only; pointing it at our
        # folder makes it load the provisioned file instead of downloading.
        os.environ["U2NET_HOME"] = str(settings.models_dir)
        #: Worker processes sharing this host's cores, as this one last knew (``retune``).
        self.workers = max(1, settings.workers_per_host or workers)
        self.threads = settings.threads_among(self.workers)
        cv2.setNumThreads(self.threads)
        self.sessions = {}
        self.paths: dict[str, Path] = {}
        self.load_seconds = {}
        for name in settings.bg_models:
            path = self.paths[name] = bg_model_file(settings, name)  # missing or corrupt: stops here
            session = self._load(name)
            if name in ISNET_MODELS and settings.batch > 1:
                self.batchers[name] = MicroBatcher(
                    _first_output(session), settings.batch, settings.batch_wait_ms / 1000
                )
            # One run at start-up: ONNX Runtime sizes its memory arena on the first run,
            # which took ~0.4 s longer than the others; a job should not pay for it.
            started = time.perf_counter()
            self.mask(np.zeros((64, 64, 3), np.uint8), name, session)
            self.warmup_seconds = time.perf_counter() - started
            self.sessions[name] = session
            log.info(
                "loaded %s (%s) on %s in %.2fs (%d threads, batch %d)",
                name,
                path.name,
                self.active[name],
                self.load_seconds[name],
                self.threads,
                settings.batch,
            )

    def _load(self, name: str):
        """A session of model ``name`` with this process's threads (spinning only alone on the host)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # Measured: mem-pattern planning holds ~0.8 GB more RSS for no speed gain.
        opts.enable_mem_pattern = False
        if self.workers > 1:
            # Spinning threads of N processes on N cores steal each other's time.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        started = time.perf_counter()
        if name in ISNET_MODELS:
            # The file rembg's own ISNet session would load, loaded the way it does. Not
            # through rembg: importing rembg imports pymatting and numba, 137 MiB of every
            # worker's memory for alpha matting only (imported when a job asks for it).
            session = ort.InferenceSession(
                str(self.paths[name]), sess_options=opts, providers=list(self.providers)
            )
        else:
            from rembg import new_session

            session = new_session(name, sess_opts=opts, providers=list(self.providers))
        self.load_seconds[name] = time.perf_counter() - started
        active = runtime_session(session).get_providers()
        self.active[name] = devices.confirm(active, self.placement, name)
        return session

    @property
    def follows_host(self) -> bool:
        """Whether the threads follow the host's count of workers (nothing fixed them; CPU; no batching)."""
        s = self.settings
        cpu_only = set(self.active.values()) <= {devices.CPU}
        return s.workers_per_host == 0 and s.threads == 0 and s.batch == 1 and cpu_only

    def retune(self, workers: int) -> bool:
        """Rebuild the sessions for one of ``workers`` processes on this host, if that changes anything.

        A session's thread count is fixed when it is built; loading ISNet again takes about
        0.5 s, and the first run of a new session ~0.4 s more, paid once per change of siblings.
        """
        import cv2

        workers = max(1, workers)
        threads = self.settings.threads_among(workers)
        if not self.follows_host or (threads, workers > 1) == (self.threads, self.workers > 1):
            self.workers = workers
            return False
        self.workers, self.threads = workers, threads
        cv2.setNumThreads(threads)
        for name in list(self.sessions):
            self.sessions[name] = self._load(name)
        log.info(
            "%d inference worker(s) on this host: sessions rebuilt with %d thread(s), spinning %s",
            workers,
            threads,
            "off" if workers > 1 else "on",
        )
        return True

    @property
    def provider(self) -> str:
        """The provider of the worker's models: the first active one of each, joined when they differ."""
        return ",".join(sorted(set(self.active.values()))) or devices.CPU

    def mask(self, rgb: np.ndarray, model: str, session=None) -> np.ndarray:
        """The foreground mask (uint8, same height and width as ``rgb``) of an RGB array."""
        session = session or self.sessions.get(model)
        if session is None:  # the API validated the model; only a misconfigured worker gets here
            raise PermanentError(f"this worker has no model {model!r}", code="invalid_options")
        if model in ISNET_MODELS:
            batcher = self.batchers.get(model)
            return self.isnet_mask(batcher.infer if batcher else _first_output(session), rgb)
        from PIL import Image

        return np.asarray(session.predict(Image.fromarray(rgb))[0])

    @staticmethod
    def isnet_input(rgb: np.ndarray, side: int = 1024) -> np.ndarray:
        """ISNet's 1x3x``side``x``side`` float32 input of an RGB array (rembg's normalisation)."""
        import cv2

        height, width = rgb.shape[:2]
        small = cv2.resize(
            rgb, (side, side), interpolation=cv2.INTER_AREA if max(height, width) > side else cv2.INTER_LINEAR
        )
        x = small.astype(np.float32)
        x *= 1.0 / max(float(x.max()), 1e-6)  # rembg scales by the image's own maximum
        x -= 0.5
        return np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis])

    @staticmethod
    def isnet_mask(infer, rgb: np.ndarray, side: int = 1024) -> np.ndarray:
        """The mask of ``rgb`` by ``infer`` (an ISNet run), fed a ``side`` x ``side`` input."""
        import cv2

        height, width = rgb.shape[:2]
        pred = infer(BackgroundRemover.isnet_input(rgb, side))[0, 0]
        lo, hi = float(pred.min()), float(pred.max())
        pred = (pred - lo) * (255.0 / max(hi - lo, 1e-6))
        # Upscale as uint8 (as rembg does): a quarter of the memory traffic of float32 at 12 MP.
        small_mask = np.clip(pred + 0.5, 0, 255).astype(np.uint8)
        return cv2.resize(small_mask, (width, height), interpolation=cv2.INTER_LINEAR)


def _first_output(session):
    """``x -> the first output`` of an ISNet session (the final mask; the others are side outputs)."""
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    return lambda x: session.run([name_out], {name_in: x})[0]


class FaceDetector:
    """MediaPipe's BlazeFace short-range detector (Tasks API) and its face mesh, loaded once."""

    def __init__(self, settings: Settings):
        import cv2
        from mediapipe.tasks.python import BaseOptions, vision

        path, mesh_path = face_model_files(settings)  # missing or corrupt: stops here
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=settings.face_min_confidence,
        )
        started = time.perf_counter()
        self._detector = vision.FaceDetector.create_from_options(options)
        # The mesh's .tflite has no Tasks metadata (MediaPipe's FaceLandmarker wants a .task
        # bundle); OpenCV's TFLite importer runs it, 5-10 ms a face.
        self._mesh = cv2.dnn.readNetFromTFLite(str(mesh_path))
        self._mesh_outputs = self._mesh.getUnconnectedOutLayersNames()
        self.landmarks(np.zeros((64, 64, 3), np.uint8), Face((8, 8, 48, 48), 1.0))  # first run sizes buffers
        self.load_seconds = time.perf_counter() - started

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face in an RGB array, looked for in the whole frame and in windows of it."""
        height, width = rgb.shape[:2]
        faces = self._detect(rgb, 0, 0)
        for left, top, side in windows(width, height):
            if side < min(width, height) or (width, height) != (side, side):
                # A window shows the detector less context: demand more certainty there
                # (measured: background texture scored 0.54-0.63, real faces 0.9+).
                faces += [
                    f
                    for f in self._detect(rgb[top : top + side, left : left + side], left, top)
                    if f.score >= WINDOW_MIN_CONFIDENCE
                ]
        return merge_faces(faces)

    def _detect(self, rgb: np.ndarray, dx: int, dy: int) -> list[Face]:
        import mediapipe as mp

        height, width = rgb.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        faces = []
        for det in self._detector.detect(image).detections:
            b = det.bounding_box
            x0, y0 = max(0, b.origin_x), max(0, b.origin_y)
            x1, y1 = min(width, b.origin_x + b.width), min(height, b.origin_y + b.height)
            if x1 > x0 and y1 > y0:
                points = tuple((k.x * width + dx, k.y * height + dy) for k in det.keypoints or ())
                faces.append(
                    Face((x0 + dx, y0 + dy, x1 - x0, y1 - y0), float(det.categories[0].score), points)
                )
        return faces

    def landmarks(self, rgb: np.ndarray, face: Face, square=None) -> Head:
        """The face mesh of ``face``: on its box turned by BlazeFace's eyes, or on ``square``."""
        import cv2

        if square is None:
            x, y, w, h = face.box
            angle = 0.0
            if len(face.keypoints) >= 2:
                (rx, ry), (lx, ly) = face.keypoints[:2]
                angle = math.atan2(ly - ry, lx - rx)
            square = (x + w / 2, y + h / 2, max(w, h) * MESH_SCALE, angle)
        to_image = square_to_image(*square)
        source = np.ascontiguousarray(rgb)
        shrink = 2 * MESH_INPUT / square[2]
        if shrink < 1:
            # warpAffine samples without averaging: a 1,500 px face would alias into 192 px.
            source = cv2.resize(source, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            to_image = then(to_image, np.array([[shrink, 0, 0], [0, shrink, 0]], np.float64))
        roi = cv2.warpAffine(
            source,
            cv2.invertAffineTransform(to_image),
            (MESH_INPUT, MESH_INPUT),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        if shrink < 1:
            to_image = then(to_image, np.array([[1 / shrink, 0, 0], [0, 1 / shrink, 0]], np.float64))
        blob = (roi.astype(np.float32) * (1.0 / 255.0)).transpose(2, 0, 1)[np.newaxis]
        self._mesh.setInput(np.ascontiguousarray(blob))
        outputs = self._mesh.forward(self._mesh_outputs)
        mesh = next(out for out in outputs if out.size == 468 * 3)
        points = mesh.reshape(-1, 3)[:, :2].astype(np.float64)
        return Head.of_mesh(points @ to_image[:, :2].T + to_image[:, 2])

    def close(self) -> None:
        self._detector.close()
