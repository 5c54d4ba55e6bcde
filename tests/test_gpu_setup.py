"""The GPU worker as an operator deploys it (issue 13): image, compose service, health check, gpu-check.

No Docker engine and no GPU here: the files are read (and hadolint runs on them in
tests/test_deploy.py), and what runs is what a machine without a GPU must do.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys

import pytest

from imgproc.config import ROOT, Settings
from imgproc.processing import devices


@pytest.fixture(scope="module")
def gpu_worker() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the dev extras")
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def _gpu_pin() -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["options.extras_require"]["gpu"].strip()


def test_the_image_carries_cuda_13_and_cudnn_9_as_the_gpu_extras_wheels():
    dockerfile = (ROOT / "Dockerfile.gpu").read_text()
    # One base for both images; CUDA from onnxruntime-gpu 1.31.1's extras (nvidia-cuda-runtime~=13.0,
    # nvidia-cudnn-cu13~=9.0), whose folders the dynamic loader is told of (tests/containers checks ldd).
    assert re.search(r"^FROM python:3\.11-slim-bookworm( AS \w+)?$", dockerfile, re.M)
    assert not re.search(r"^FROM nvidia/", dockerfile, re.M)
    assert _gpu_pin() == "onnxruntime-gpu[cuda,cudnn]==1.31.1" and 'pip install ".[gpu]"' in dockerfile
    assert "/etc/ld.so.conf.d/" in dockerfile and "ldconfig" in dockerfile
    assert "libcudnn.so.9" in devices.CUDA_LIBRARIES[13]
    assert re.search(r"^USER 10001$", dockerfile, re.M) and "imgproc models fetch" in dockerfile
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[.*imgproc.tools.workerstatus.*--healthy", dockerfile, re.M)
    assert "IMGPROC_DEVICE=cuda" in dockerfile


def test_compose_gpu_worker_reserves_a_gpu_and_shares_storage_and_database(gpu_worker):
    worker = gpu_worker["worker-gpu"]
    assert worker["build"]["dockerfile"] == "Dockerfile.gpu" and worker["profiles"] == ["gpu"]
    devices_ = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices_ == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    env = worker["environment"]
    assert env["IMGPROC_DEVICE"] == "cuda" and int(env["IMGPROC_BATCH"]) > 1
    api = gpu_worker["api"]
    assert (
        worker["volumes"] == api["volumes"]
        and env["IMGPROC_DATABASE_URL"] == api["environment"]["IMGPROC_DATABASE_URL"]
    )
    assert worker["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert int(worker["stop_grace_period"].rstrip("s")) > int(env["IMGPROC_JOB_TIMEOUT"])


def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    out = tmp_path / "results-gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", str(out)],
        cwd=ROOT,
        env=dict(os.environ, PATH="/usr/bin:/bin"),  # no nvidia-smi on it
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no GPU here: nvidia-smi is not on PATH") and not out.exists()


def test_health_check_of_a_worker_container(runtime, settings):
    from imgproc.jobtypes import QUEUES
    from imgproc.tools.workerstatus import healthy
    from imgproc.worker import build_worker

    said = []
    assert healthy(settings, hostname="elsewhere", out=said.append) == 1 and "no worker of host" in said[-1]
    worker = build_worker(settings, QUEUES, runtime=runtime)
    worker.register_birth()
    try:
        assert healthy(settings, hostname=worker.hostname, out=said.append) == 0
        assert said[-1] == "healthy: 1 worker(s) on CPUExecutionProvider"
        cuda = settings.replace(device="cuda")
        assert healthy(cuda, hostname=worker.hostname, out=said.append) == 1
        assert "IMGPROC_DEVICE=cuda but" in said[-1] and "CPUExecutionProvider" in said[-1]
    finally:
        worker.register_death()


def test_settings_refuse_an_unknown_precision_or_batch():
    with pytest.raises(ValueError, match="IMGPROC_PRECISION"):
        Settings.from_env({"IMGPROC_PRECISION": "int4"})
    with pytest.raises(ValueError, match="IMGPROC_BATCH"):
        Settings.from_env({"IMGPROC_BATCH": "0"})
    assert Settings.from_env({"IMGPROC_BATCH": "8", "IMGPROC_BATCH_WAIT_MS": "2.5"}).batch_wait_ms == 2.5
