"""``models/manifest.json``: which model files a worker needs, and whether those on disk are them.

Standard library only, like the provisioning beside it (``provision``); ``paths`` verifies a
worker's files with it at start.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from imgproc.config import ROOT
from imgproc.errors import ModelMissing

MANIFEST_NAME = "manifest.json"


def load_manifest(models_dir: str | os.PathLike) -> dict:
    """Return the manifest of the checkout, or the one inside ``models_dir`` for an installed package."""
    candidates = [ROOT / "models" / MANIFEST_NAME, Path(models_dir) / MANIFEST_NAME]
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text())
    raise ModelMissing(f"no {MANIFEST_NAME} in {' or '.join(str(p.parent) for p in candidates)}")


def check_models(models_dir: str | os.PathLike) -> list[str]:
    """Return one line per missing or corrupt model file; an empty list means all verify."""
    try:
        entries = load_manifest(models_dir)["files"]
    except ModelMissing as exc:
        return [str(exc)]
    problems = ((e["name"], file_problem(Path(models_dir) / e["name"], e)) for e in entries)
    return [f"{name}: {problem}" for name, problem in problems if problem]


def require_models(models_dir: str | os.PathLike) -> None:
    """Raise ModelMissing, saying how to fix it, unless every model file verifies."""
    if problems := check_models(models_dir):
        raise ModelMissing(
            f"model weights in {models_dir} are not usable:\n"
            + "".join(f"  - {p}\n" for p in problems)
            + "Run `imgproc models fetch` (needs npm and pip with registry access) "
            "or copy the files listed in models/manifest.json into that folder."
        )


def file_problem(path: Path, entry: dict) -> str | None:
    """Say what is wrong with ``path`` for ``entry``, or None when it matches any accepted source."""
    if not path.is_file():
        return f"missing from {path.parent}"
    size = path.stat().st_size
    digests: dict[str, str] = {}
    # The size test first: a partial download is rejected without hashing 88 MB.
    for accepted in [entry] + entry.get("alternatives", []):
        if accepted.get("size") not in (None, size):
            continue
        for algo in {"sha256", "md5"} & accepted.keys():
            if algo not in digests:
                with open(path, "rb") as f:
                    digests[algo] = hashlib.file_digest(f, algo).hexdigest()
        if all(digests[algo] == accepted[algo] for algo in {"sha256", "md5"} & accepted.keys()):
            return None
    wanted = f" instead of {entry['size']}" if entry.get("size") not in (None, size) else ""
    return f"{size} bytes{wanted}, hash matches none in the manifest (partial or corrupt file)"
