"""imgproc:gpu on a machine without a GPU: everything CUDA needs is in the image except the host's driver.

The driver (libcuda.so.1) comes from the host at `docker run --gpus all`; all else (ONNX Runtime's CUDA
build, CUDA 13 and cuDNN 9 as NVIDIA's wheels) must be in the image and found by the dynamic loader,
and a worker asked for CUDA must refuse to start, naming the driver, rather than run on the CPU.
"""

from __future__ import annotations

import configparser
import json
import subprocess

import pytest

from imgproc.config import ROOT
from tests.containers import conftest

IMAGE = "imgproc:gpu"
#: A Redis database of its own, beside the suite's 13 and test_image's 8.
REDIS_URL = "redis://127.0.0.1:6379/7"
#: Measured 4.91 GB (CUDA 13 and cuDNN 9 wheels 2.1 GB, models 0.6 GB); more means something new came in.
MAX_SIZE = 5.5e9
SITE = "/usr/local/lib/python3.11/site-packages"


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return conftest.podman(*args, timeout=timeout, check=False)


def run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return podman("run", "--rm", IMAGE, *command, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def image():
    conftest.require_image(IMAGE)


def test_onnxruntime_is_the_pinned_cuda_build():
    """A CPU onnxruntime pulled in beside onnxruntime-gpu would shadow it and drop the CUDA provider."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    pinned = config["options.extras_require"]["gpu"].strip().rpartition("==")[2]
    done = run("python", "-c", "import onnxruntime as o; print(o.__version__, o.get_available_providers())")
    assert done.returncode == 0, done.stderr
    version, providers = done.stdout.strip().split(" ", 1)
    print(done.stdout.strip())
    assert version == pinned and "'CUDAExecutionProvider'" in providers


def test_the_cuda_provider_resolves_every_library_but_the_driver():
    """ldconfig knows the wheels' folders: only libcuda.so.1, which the host's driver brings, is missing."""
    library = f"{SITE}/onnxruntime/capi/libonnxruntime_providers_cuda.so"
    done = run("ldd", library)
    assert done.returncode == 0, done.stderr
    missing = [line.strip() for line in done.stdout.splitlines() if "not found" in line]
    print("\n".join(missing))
    assert missing == ["libcuda.so.1 => not found"], done.stdout


def test_a_cuda_worker_without_a_driver_refuses_to_start_and_names_it():
    """IMGPROC_DEVICE=cuda (the image's default): exit 2 and the reason, not a silent CPU worker."""
    redis = ["--network", "host", "-e", f"REDIS_URL={REDIS_URL}"]
    done = podman("run", "--rm", *redis, IMAGE, "python", "worker.py", timeout=300)
    refusal = [line for line in done.stderr.splitlines() if "worker cannot start" in line]
    print(done.returncode, *refusal, sep="\n")
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(refusal) == 1 and "no NVIDIA driver: libcuda.so.1 cannot be loaded" in refusal[0]
    assert "libraries missing" not in done.stderr  # CUDA and cuDNN themselves were found


def test_the_image_size_is_within_bounds():
    """Most of the image is NVIDIA's wheels; a second CUDA or a stray download would show here first."""
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    folders = run("sh", "-c", f"du -sh {SITE}/nvidia/*")
    assert folders.returncode == 0, folders.stderr
    print(f"{IMAGE}: {size / 1e9:.2f} GB\n{folders.stdout}")
    assert {line.rsplit("/", 1)[-1] for line in folders.stdout.splitlines()} == {"cu13", "cudnn"}
    assert size < MAX_SIZE, f"{IMAGE} is {size / 1e9:.2f} GB, over {MAX_SIZE / 1e9:.1f} GB"


def test_the_image_keeps_its_health_check():
    """Podman's own image format has no HEALTHCHECK: deploy/images/build.sh builds Docker's."""
    found = podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE)
    check = json.loads(found.stdout or "null")
    assert check and "imgproc.tools.workerstatus" in " ".join(check["Test"]), check
