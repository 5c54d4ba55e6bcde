"""Where a worker's ONNX sessions run: CUDA when asked and working, else a refusal or a loud CPU fallback.

    place(device)            the providers to ask ONNX Runtime for, with the CUDA options below
    confirm(session, ...)    the provider a session really runs on; ``cuda`` refuses anything else
    cuda_problems()          why CUDA cannot be had here: no CUDA build, no driver, a missing library

onnxruntime falls back to CPU without a word when the CUDA provider cannot load
(rembg#632, #661, #439): ``IMGPROC_DEVICE=cuda`` therefore checks the session's
first active provider and names the reason, and ``auto`` says so in a warning where a GPU is
there to be used (an NVIDIA driver, or onnxruntime's CUDA build); on a machine with neither, the
CPU is simply what ``auto`` means, and it is said at debug level only.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from imgproc.errors import DeviceUnavailable

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

#: The CUDA provider's options, chosen for a worker that runs one fixed input shape for hours:
#: - cudnn_conv_algo_search EXHAUSTIVE: cuDNN times every conv algorithm once per shape (at the
#:   start-up warm-up run and the first run of each batch size); ISNet's input is always 1024x1024,
#:   so the search is paid a few times per process and the fastest kernels are kept.
#: - arena_extend_strategy kSameAsRequested: the arena grows by what a run needs rather than
#:   doubling (kNextPowerOfTwo), so several workers sharing one GPU do not each reserve twice
#:   their working set.
#: - do_copy_in_default_stream 1 (ONNX Runtime's default, stated): copies and kernels on one stream,
#:   which is what keeps a session safe to run from several threads (the job slots) without races.
CUDA_OPTIONS = {
    "device_id": "0",
    "cudnn_conv_algo_search": "EXHAUSTIVE",
    "arena_extend_strategy": "kSameAsRequested",
    "do_copy_in_default_stream": "1",
}

#: Shared libraries the CUDA provider loads, by the CUDA major of the onnxruntime-gpu build (1.31.1 is
#: CUDA 13, ``onnxruntime.cuda_version``): the NEEDED entries of its libonnxruntime_providers_cuda.so
#: (cudart, cublas, cublasLt, curand), with cuFFT and cuDNN 9 that it opens itself (its preload_dlls list).
CUDA_LIBRARIES = {
    major: (
        f"libcudart.so.{major}",
        f"libcublas.so.{major}",
        f"libcublasLt.so.{major}",
        "libcurand.so.10",
        f"libcufft.so.{major - 1}",
        "libcudnn.so.9",
    )
    for major in (12, 13)
}


@dataclass(frozen=True)
class Placement:
    """The providers asked for, and why CUDA is not among them (``auto`` on a machine without it).

    ``quiet``: the fallback is no news (no GPU driver and a CPU build): logged at debug, not warned.
    """

    device: str
    providers: tuple
    fallback: str = ""
    quiet: bool = False

    @property
    def wants_cuda(self) -> bool:
        return any((p[0] if isinstance(p, tuple) else p) == CUDA for p in self.providers)


def _loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
        return True
    except OSError:
        return False


def _cuda_major(build_info: str) -> int:
    found = re.search(r"cuda_version\W*(\d+)", build_info)
    return int(found.group(1)) if found else 13


def cuda_problems(
    available: list[str] | None = None, loadable: Callable[[str], bool] = _loadable, build_info: str = ""
) -> list[str]:
    """Every reason this machine cannot run the CUDA provider; empty when nothing is missing."""
    import onnxruntime as ort

    available = ort.get_available_providers() if available is None else available
    if CUDA not in available:
        return [
            f"this onnxruntime {ort.__version__} is a CPU build (providers: {', '.join(available)}); "
            "install the gpu extra instead of the cpu one: pip install 'imgproc[gpu]' "
            "(onnxruntime-gpu==1.31.1, a CUDA 13 build), and uninstall onnxruntime"
        ]
    problems = []
    if not loadable("libcuda.so.1"):
        problems.append("no NVIDIA driver: libcuda.so.1 cannot be loaded (docker run --gpus all? nvidia-smi)")
    major = _cuda_major(build_info or f"cuda_version={getattr(ort, 'cuda_version', '')}")
    missing = [lib for lib in CUDA_LIBRARIES.get(major, CUDA_LIBRARIES[13]) if not loadable(lib)]
    if missing:
        problems.append(
            f"CUDA {major} / cuDNN 9 libraries missing: {', '.join(missing)} "
            f"(the gpu extra's nvidia-* wheels: pip install 'imgproc[gpu]'; "
            f"or an nvidia/cuda:{major}.x-cudnn-runtime base)"
        )
    return problems


def _preload() -> None:
    """Load CUDA and cuDNN from pip's nvidia-* packages when they are installed (onnxruntime-gpu >= 1.21)."""
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
        except (OSError, RuntimeError) as exc:  # libraries from the system (LD_LIBRARY_PATH) then, or none
            log.debug("onnxruntime.preload_dlls: %s", exc)


def place(device: str, loadable: Callable[[str], bool] = _loadable) -> Placement:
    """The providers for ``auto``, ``cpu`` or ``cuda``; ``cuda`` with a CPU-only onnxruntime refuses here."""
    import onnxruntime as ort

    if device == "cpu":
        return Placement(device, (CPU,))
    if CUDA in ort.get_available_providers():
        _preload()
        return Placement(device, ((CUDA, dict(CUDA_OPTIONS)), CPU))
    reason = "; ".join(cuda_problems())
    if device == "cuda":
        raise DeviceUnavailable(f"IMGPROC_DEVICE=cuda but CUDA cannot be used: {reason}")
    # A CPU build on a machine without an NVIDIA driver: there is no GPU to miss, so no warning on
    # every CPU worker's start; with a driver, the CPU build is worth a word (install the gpu extra).
    return Placement(device, (CPU,), fallback=reason, quiet=not loadable("libcuda.so.1"))


def confirm(active: list[str], placement: Placement, model: str) -> str:
    """The provider ``model``'s session runs on (its first active one); ``cuda`` refuses a CPU session."""
    provider = active[0] if active else CPU
    if placement.wants_cuda and provider != CUDA:
        # onnxruntime logged its own error and went on with CPU: find out why, in words.
        reason = (
            "; ".join(cuda_problems()) or "onnxruntime could not start its CUDA provider (its log says why)"
        )
        if placement.device == "cuda":
            raise DeviceUnavailable(f"IMGPROC_DEVICE=cuda but {model} runs on {provider}: {reason}")
        log.warning("IMGPROC_DEVICE=auto: CUDA is not usable, %s runs on %s: %s", model, provider, reason)
    elif placement.fallback:
        (log.debug if placement.quiet else log.warning)(
            "IMGPROC_DEVICE=auto: no CUDA here, %s runs on %s (expect CPU speed): %s; "
            "IMGPROC_DEVICE=cpu chooses the CPU without this check",
            model,
            provider,
            placement.fallback,
        )
    return provider
