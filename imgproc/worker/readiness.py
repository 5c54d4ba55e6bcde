"""The worker's readiness file: there once the models are loaded, gone when the process leaves.

A Kubernetes readiness probe (``test -f``) reads it; so can anything that must
know a worker is ready to take jobs without asking Redis.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from pathlib import Path


def mark(path: str, name: str) -> None:
    """Write ``path`` (the worker's name inside), removed at exit; nothing when ``path`` is empty."""
    if not path:
        return
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f"{name} {os.getpid()}\n")
    atexit.register(clear, path)


def clear(path: str) -> None:
    """Remove the readiness file, if there."""
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
