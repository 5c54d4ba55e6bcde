"""Where each model file a worker loads is, checked against ``models/manifest.json`` before it loads.

A file the manifest pins is verified by its size, then its sha256: a worker whose file is partial
or corrupt stops at start (``ChecksumMismatch``), never at its first job. Measured on this
checkout's 2-core machine: 0.05 s for ISNet (88 MB), 0.11 s for its fp32 copy (176 MB), the face
files 2 ms; the bytes hashed are the ones ONNX Runtime reads next, from the page cache. A file
the manifest does not pin (rembg's other models, ``imgproc models fetch --model``) must exist.
"""

from __future__ import annotations

from pathlib import Path

from imgproc.config import Settings
from imgproc.errors import ChecksumMismatch, ModelMissing

from .manifest import file_problem, load_manifest

#: ISNet variants a job may name (listed in IMGPROC_BG_MODELS) and their files, made by `make models`
#: (``variants.py``; speed and masks in the README's model table, from bench/variants.py).
VARIANT_FILES = {"isnet-general-use-int8": "isnet-general-use.int8.onnx"}
#: Models of ISNet's family: their file follows the precision and the batch (``isnet_file``).
ISNET_MODELS = frozenset({"isnet-general-use", "isnet-anime", *VARIANT_FILES})


def isnet_file(model: str, precision: str, batch: int) -> str:
    """The file name of ``model`` for a precision and batch size (the provisioned one for fp16 at batch 1).

    The provisioned ISNet is already a float16 export with a batch dimension fixed at 1; ``make
    models`` writes ``<model>.fp16.onnx`` (the same graph, batch dimension symbolic) and
    ``<model>.fp32.onnx`` (weights upcast to float32, casts to float16 removed, batch symbolic).
    """
    if precision == "fp16" and batch == 1:
        return f"{model}.onnx"
    return f"{model}.{precision}.onnx"


def bg_model_file(settings: Settings, name: str) -> Path:
    """The verified file of background-removal model ``name`` for ``settings``."""
    isnet = name in ISNET_MODELS
    file = f"{name}.onnx"
    if isnet:
        file = VARIANT_FILES.get(name) or isnet_file(name, settings.precision, settings.batch)
    fix = "Run `make models`." if isnet else f"Run `imgproc models fetch --model {name}`."
    return _verified(Path(settings.models_dir) / file, f"background-removal model {name!r}", fix)


def face_model_files(settings: Settings) -> tuple[Path, Path]:
    """The verified files of the face detector (BlazeFace) and the face mesh."""
    folder = Path(settings.models_dir)
    return (
        _verified(folder / settings.face_model, "face-detection model", "Run `make models`."),
        _verified(folder / settings.face_landmark_model, "face-landmark model", "Run `make models`."),
    )


def _verified(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise ModelMissing(f"{what} is missing: expected {path}. {fix}")
    manifest = load_manifest(path.parent)
    pinned = {e["name"]: e for section in ("files", "derived", "variants") for e in manifest.get(section, [])}
    entry = pinned.get(path.name)
    if entry is not None and (problem := file_problem(path, entry)):
        raise ChecksumMismatch(f"{what} at {path} is not the file the manifest pins: {problem}. {fix}")
    return path
