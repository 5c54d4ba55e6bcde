"""Where each model file is, verified against the manifest (a worker's start: tests/test_workers.py)."""

from __future__ import annotations

import pytest

from imgproc.config import ROOT, Settings
from imgproc.errors import ChecksumMismatch, ModelMissing
from imgproc.modelfiles import bg_model_file, face_model_files, load_manifest

MODELS = ROOT / "models"
PINNED = {e["name"]: e for e in load_manifest(MODELS)["files"]}
ISNET = "isnet-general-use.onnx"


def _folder(tmp_path, **files):
    """A models folder of links to the checkout's files, but for ``files`` (name -> bytes or a size)."""
    for name in PINNED:
        if name not in files:
            (tmp_path / name).symlink_to(MODELS / name)
    for name, content in files.items():
        if isinstance(content, int):
            with open(tmp_path / name, "wb") as f:
                f.truncate(content)  # the right size, all zeros
        else:
            (tmp_path / name).write_bytes(content)
    return Settings(models_dir=str(tmp_path))


def test_the_files_a_worker_loads_are_named_and_verified_by_the_model_files():
    settings = Settings(models_dir=str(MODELS))
    assert bg_model_file(settings, "isnet-general-use") == MODELS / ISNET
    assert bg_model_file(settings.replace(precision="fp32"), "isnet-general-use").name == (
        "isnet-general-use.fp32.onnx"
    )
    assert bg_model_file(settings, "isnet-general-use-int8").name == "isnet-general-use.int8.onnx"
    assert face_model_files(settings) == (
        MODELS / "face_detection_short_range.tflite",
        MODELS / "face_landmark.tflite",
    )


def test_a_file_of_the_right_size_but_other_bytes_is_refused(tmp_path):
    settings = _folder(tmp_path, **{"face_landmark.tflite": PINNED["face_landmark.tflite"]["size"]})
    with pytest.raises(ChecksumMismatch, match="face-landmark model .*face_landmark.tflite.* manifest"):
        face_model_files(settings)


def test_a_partial_file_is_refused_and_a_missing_one_named(tmp_path):
    partial = (MODELS / "face_detection_short_range.tflite").read_bytes()[:1000]
    settings = _folder(tmp_path, **{"face_detection_short_range.tflite": partial})
    with pytest.raises(ChecksumMismatch, match="1000 bytes instead of 229714"):
        face_model_files(settings)
    with pytest.raises(ModelMissing, match="'u2net' is missing: .*imgproc models fetch --model u2net"):
        bg_model_file(settings, "u2net")
    (tmp_path / "u2net.onnx").write_bytes(b"not pinned by the manifest: it only has to be there")
    assert bg_model_file(settings, "u2net") == tmp_path / "u2net.onnx"
