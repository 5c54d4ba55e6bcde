"""IMGPROC_READY_FILE: a worker's readiness file is there once its models are loaded, gone when it leaves."""

import signal

from imgproc.testing import wait_for


def test_ready_file_follows_the_worker(redis_conn, worker_env, workers, tmp_path):
    ready = tmp_path / "run" / "ready"
    (worker,) = workers(worker_env(IMGPROC_READY_FILE=str(ready)), "face-crop")
    wait_for(ready.exists, 90, "the readiness file")
    assert "ready in" in worker.log()  # written after the models loaded, not at start
    assert ready.read_text().split()[0] == worker.name
    wait_for(lambda: worker.ready(redis_conn), 30, "the worker to register")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.log()
    assert not ready.exists()


def test_no_ready_file_when_the_models_cannot_load(worker_env, workers, tmp_path):
    ready = tmp_path / "ready"
    (worker,) = workers(
        worker_env(IMGPROC_READY_FILE=str(ready), IMGPROC_MODELS_DIR=str(tmp_path)), "face-crop"
    )
    assert worker.wait(60) == 2, worker.log()  # a missing model: the worker refuses to start
    assert not ready.exists()
