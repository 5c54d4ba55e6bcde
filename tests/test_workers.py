"""Worker start-up and configuration: what an operator sees before any job runs."""

import io
import os
import subprocess
import sys

import pytest
from PIL import Image

from imgproc.config import ROOT, Settings
from imgproc.errors import PermanentError
from imgproc.processing import operations
from imgproc.processing.models import providers_for
from imgproc.worker.failures import classify
from tests.conftest import REDIS_TEST_URL


def _boot(models_dir, queues: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, IMGPROC_MODELS_DIR=str(models_dir), REDIS_URL=REDIS_TEST_URL)
    return subprocess.run(
        [sys.executable, "worker.py", "--queues", queues, "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_model_stops_the_worker_at_boot(tmp_path):
    proc = _boot(tmp_path, "face-crop")
    assert proc.returncode == 2
    assert "isnet-general-use" in proc.stderr and "make models" in proc.stderr


def test_a_corrupt_model_file_stops_the_worker_at_boot(tmp_path):
    """The manifest's size and sha256 are checked at start (imgproc.modelfiles), not only the name."""
    models = ROOT / "models"
    for name in ("face_detection_short_range.tflite", "face_landmark.tflite"):
        (tmp_path / name).symlink_to(models / name)
    with open(tmp_path / "isnet-general-use.onnx", "wb") as f:
        f.truncate((models / "isnet-general-use.onnx").stat().st_size)  # the right size, all zeros
    proc = _boot(tmp_path, "bg-removal")
    assert proc.returncode == 2, proc.stderr
    assert "isnet-general-use.onnx" in proc.stderr and "hash matches none in the manifest" in proc.stderr
    assert "make models" in proc.stderr


def test_unknown_queue_is_refused():
    proc = subprocess.run(
        [sys.executable, "worker.py", "--queues", "bg-removal,thumbnails"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "thumbnails" in proc.stderr


def test_threads_default_to_cores_per_worker():
    assert Settings(cores=8, workers_per_host=2).intra_op_threads == 4
    assert Settings(cores=2, workers_per_host=3).intra_op_threads == 1
    assert Settings(cores=8, threads=3).intra_op_threads == 3
    s = Settings.from_env(
        {"IMGPROC_WORKERS_PER_HOST": "2", "IMGPROC_MAX_ATTEMPTS": "4", "IMGPROC_RETRY_BACKOFF": "2"}
    )
    assert s.workers_per_host == 2 and s.retry_intervals == [2, 4, 8]
    # By default a worker counts its siblings on the host (queueing.hosts) and takes its share.
    assert Settings().workers_per_host == 0 and Settings(cores=8).threads_among(3) == 2
    assert Settings(cores=2).threads_among(3) == 1 and Settings(cores=8, threads=3).threads_among(4) == 3


def test_settings_refuse_impossible_values():
    with pytest.raises(ValueError, match="IMGPROC_DEVICE"):
        Settings.from_env({"IMGPROC_DEVICE": "tpu"})
    with pytest.raises(ValueError, match="IMGPROC_BG_MODELS"):
        Settings.from_env({"IMGPROC_BG_MODEL": "u2net", "IMGPROC_BG_MODELS": "isnet-general-use"})
    with pytest.raises(ValueError, match="IMGPROC_WORKERS_PER_HOST"):
        Settings.from_env({"IMGPROC_WORKERS_PER_HOST": "-1"})


def test_device_cuda_without_a_cuda_onnxruntime_fails_clearly():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert providers_for("cuda")[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
            providers_for("cuda")
        assert providers_for("auto") == ["CPUExecutionProvider"]
    assert providers_for("cpu") == ["CPUExecutionProvider"]


def test_unexpected_exceptions_get_a_code():
    error = classify(ZeroDivisionError("boom"), 300)
    assert isinstance(error, PermanentError) and error.code == "internal" and "boom" in error.message


def test_strip_metadata_or_keep_it():
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0112] = 6  # rotated on display
    buf = io.BytesIO()
    Image.new("RGB", (60, 20), "white").save(buf, "JPEG", exif=exif.tobytes())
    tools = operations.Tools(max_pixels=10**6, png_level=1)
    opts = {"resize": None, "fit": "contain", "format": "jpg", "quality": 80}
    stripped = operations.process_image(buf.getvalue(), {**opts, "strip_metadata": True}, tools)
    kept = operations.process_image(buf.getvalue(), {**opts, "strip_metadata": False}, tools)
    for out in (stripped, kept):
        assert (out.width, out.height) == (20, 60)  # orientation applied either way
    assert not Image.open(io.BytesIO(stripped.data)).getexif()
    kept_exif = Image.open(io.BytesIO(kept.data)).getexif()
    assert kept_exif.get(0x010F) == "CameraMaker" and kept_exif.get(0x0112, 1) == 1


STOP_WHILE_STARTING = """
import os, signal
from imgproc.config import Settings
from imgproc.worker import build_worker

worker = build_worker(Settings.from_env(), ("image-processing",))
# The stop arrives while rq starts the scheduler: after the worker registered, before rq's handlers.
worker._start_scheduler = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGTERM)
worker.work(with_scheduler=True)
print("stopped", worker.stopping, worker.get_state())
"""


def test_a_stop_while_the_worker_starts_ends_it_cleanly(settings, redis_conn):
    from tests.conftest import process_env

    proc = subprocess.run(
        [sys.executable, "-c", STOP_WHILE_STARTING],
        cwd=ROOT,
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # was -15: killed by the signal mid-start
    assert "stopped True" in proc.stdout
    assert not redis_conn.smembers("rq:workers"), "the worker deregistered"


def test_a_stopping_worker_ends_its_pubsub_thread_at_once(settings, redis_conn):
    """rq's pubsub thread ends at the UNSUBSCRIBE reply, also when it reads it before the stop goes on."""
    import time

    from imgproc.worker import build_worker
    from tests.conftest import worker_runtime

    with worker_runtime(settings, redis_conn) as runtime:
        worker = build_worker(settings, ("image-processing",), runtime=runtime)
        worker.subscribe()
        pubsub, thread = worker.pubsub, worker.pubsub_thread
        send, alive = pubsub.unsubscribe, []

        def unsubscribe_on_a_busy_host(*args):
            send(*args)
            while pubsub.subscribed:  # the thread reads the reply before this thread goes on
                time.sleep(0.01)
            thread.join(10)  # it had gone back to wait 60 s for a subscription (rq's sleep_time)
            alive.append(thread.is_alive())

        pubsub.unsubscribe = unsubscribe_on_a_busy_host
        worker.unsubscribe()
    assert alive == [False]


def test_a_stop_asked_for_while_a_job_ends_lets_it_finish(
    client, vendor_key, runtime, photo_server, photos, monkeypatch
):
    """SIGTERM while a finished job's end is being written: the job stays finished, the next one waits.

    The end's transaction writes the worker's idle state; in memory the worker stays busy until rq's
    own step after the job, or rq would raise StopRequested into the end and fail a finished job.
    """
    import signal

    import redis

    from imgproc.jobtypes import QUEUES
    from imgproc.worker import build_worker

    acme = vendor_key("acme")
    photo_server.serve("/c.jpg", photos["coffee"])
    url = photo_server.url("/c.jpg")
    items = [{"record_id": f"r{i}", "image_url": url, "options": {"resize": [24, 24]}} for i in range(2)]
    ids = client.post("/api/image-queue/bulk-process-image", json={"items": items}, headers=acme).json[
        "job_ids"
    ]
    worker = build_worker(runtime.settings, QUEUES, runtime=runtime)
    send = redis.client.Pipeline.execute

    def stop_while_ending(pipe, *args, **kwargs):
        # The stop arrives as the end's transaction (the one that writes the worker idle) is sent.
        if any(list(c[:4]) == ["HSET", worker.key, "state", "idle"] for c, _ in pipe.command_stack):
            worker.request_stop(signal.SIGTERM, None)
        return send(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", stop_while_ending)
    worker.work(burst=True)
    states = [client.get(f"/api/image-queue/job/{i}", headers=acme).json["state"] for i in ids]
    assert states == ["finished", "queued"]
