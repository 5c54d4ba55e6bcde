"""Device selection that never lies (issue 13): refusals with a reason, a loud fallback, the provider shown.

These run on a machine without CUDA (CI's, this one): the CUDA side is proven by
``make gpu-check`` on a GPU machine (bench/gpu_check.py).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import onnxruntime as ort
import pytest

from imgproc.config import ROOT
from imgproc.errors import DeviceUnavailable
from imgproc.processing import devices

CPU_BUILD = devices.CUDA not in ort.get_available_providers()
needs_cpu_build = pytest.mark.skipif(
    not CPU_BUILD, reason="this onnxruntime has CUDA: the GPU check covers it"
)


@needs_cpu_build
def test_cuda_asked_on_a_cpu_build_refuses_with_the_fix():
    with pytest.raises(DeviceUnavailable) as refused:
        devices.place("cuda")
    message = str(refused.value)
    assert "IMGPROC_DEVICE=cuda" in message and "CPU build" in message
    assert "onnxruntime-gpu==1.31.1" in message and refused.value.code == "device_unavailable"


@needs_cpu_build
def test_auto_on_a_machine_without_a_gpu_runs_on_cpu_without_a_warning(caplog):
    """No NVIDIA driver and a CPU build: nothing to miss, so no warning on every CPU worker's start."""
    placement = devices.place("auto", loadable=lambda lib: False)
    assert placement.providers == (devices.CPU,) and "CPU build" in placement.fallback and placement.quiet
    with caplog.at_level(logging.DEBUG, logger="imgproc.processing.devices"):
        assert devices.confirm([devices.CPU], placement, "isnet-general-use") == devices.CPU
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "IMGPROC_DEVICE=auto: no CUDA here" in caplog.text  # at debug, for whoever looks


@needs_cpu_build
def test_auto_with_a_gpu_driver_but_a_cpu_build_falls_back_to_cpu_and_says_so(caplog):
    placement = devices.place("auto", loadable=lambda lib: lib == "libcuda.so.1")
    assert placement.providers == (devices.CPU,) and not placement.quiet
    with caplog.at_level(logging.WARNING, logger="imgproc.processing.devices"):
        assert devices.confirm([devices.CPU], placement, "isnet-general-use") == devices.CPU
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING and "IMGPROC_DEVICE=auto: no CUDA here" in warning.message
    assert "CPU build" in warning.message and "pip install 'imgproc[gpu]'" in warning.message


def test_cpu_asks_for_cpu_only():
    assert devices.place("cpu").providers == (devices.CPU,)


def test_a_cuda_session_that_fell_back_to_cpu_is_refused_with_the_missing_libraries(monkeypatch):
    """onnxruntime-gpu installed, but its session came up on CPU (cuDNN missing): cuda refuses, naming it."""
    gone = {"libcudnn.so.9", "libcublasLt.so.13"}
    problems = devices.cuda_problems
    monkeypatch.setattr(
        devices,
        "cuda_problems",
        lambda: problems([devices.CUDA, devices.CPU], lambda lib: lib not in gone, "cuda_version=13"),
    )
    placement = devices.Placement("cuda", ((devices.CUDA, devices.CUDA_OPTIONS), devices.CPU))
    with pytest.raises(DeviceUnavailable, match="runs on CPUExecutionProvider") as refused:
        devices.confirm([devices.CPU], placement, "isnet-general-use")
    assert "libcudnn.so.9" in str(refused.value) and "libcublasLt.so.13" in str(refused.value)
    assert devices.confirm([devices.CUDA, devices.CPU], placement, "isnet-general-use") == devices.CUDA


def test_no_driver_is_named():
    problems = devices.cuda_problems([devices.CUDA], lambda lib: lib != "libcuda.so.1", "cuda_version=13")
    assert problems == ["no NVIDIA driver: libcuda.so.1 cannot be loaded (docker run --gpus all? nvidia-smi)"]


def test_cuda_options_are_the_ones_chosen():
    assert devices.CUDA_OPTIONS["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert devices.CUDA_OPTIONS["arena_extend_strategy"] == "kSameAsRequested"
    assert devices.CUDA_OPTIONS["do_copy_in_default_stream"] == "1"


@needs_cpu_build
def test_a_worker_asked_for_cuda_refuses_to_start_and_says_why(settings):
    from tests.conftest import process_env

    done = subprocess.run(
        [sys.executable, "worker.py", "--queues", "bg-removal", "--burst"],
        cwd=ROOT,
        env=process_env(settings, IMGPROC_DEVICE="cuda"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "worker cannot start: IMGPROC_DEVICE=cuda but CUDA cannot be used" in done.stderr
    assert "onnxruntime-gpu" in done.stderr


def test_health_and_workers_status_show_the_provider_each_worker_runs(client, runtime, settings, capsys):
    from imgproc.jobtypes import QUEUES
    from imgproc.tools.workerstatus import show
    from imgproc.worker import build_worker

    worker = build_worker(settings, QUEUES, runtime=runtime)
    worker.register_birth()
    try:
        health = client.get("/health").get_json()
        assert health["workers"] == 1 and health["providers"] == {devices.CPU: 1}
        assert show(settings) == 0
        out = capsys.readouterr().out
        assert worker.name in out and devices.CPU in out and "fp16" in out
        # HOST: which machine or container runs it.
        assert out.splitlines()[0].split()[:3] == ["WORKER", "HOST", "STATE"]
        assert out.splitlines()[1].split()[1] == socket.gethostname()
        assert f"1 worker(s): 1 on {devices.CPU}" in out
    finally:
        worker.register_death()


def test_workers_status_from_the_command_line(settings, redis_conn):
    from tests.conftest import process_env

    done = subprocess.run(
        [sys.executable, "-m", "imgproc.tools.cli", "workers", "--status"],
        cwd=ROOT,
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 1 and "no worker is registered" in done.stdout, done.stderr
