"""The job's contract in one place each: who names a key of a job's meta, who reads a stored payload.

``imgproc/queueing/state.py`` (``JobState``) is the only module that names the
keys of ``job.meta``; ``Payload.of`` / ``Payload.decode`` in
``imgproc/jobtypes.py`` the only readers of a job's stored arguments.
``python -m tests.layout`` prints both lists and fails on any entry.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "imgproc"
#: The one module that names the meta keys, and the one that reads the stored payload.
STATE = Path("queueing/state.py")
PAYLOAD = Path("jobtypes.py")
#: dict methods that name a key as their first argument.
KEYED = {"get", "pop", "setdefault"}


def _is_meta(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "meta") or (
        isinstance(node, ast.Attribute) and node.attr == "meta"
    )


def _string(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def meta_keys(root: Path = ROOT) -> list[tuple[str, int]]:
    """Places outside ``STATE`` naming a meta key: ``x.meta["k"]``, ``meta.get("k")``, ``x.meta.pop("k")``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel == STATE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Subscript) and _is_meta(node.value) and _string(node.slice):
                found.append((str(rel), node.lineno))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in KEYED
                and _is_meta(node.func.value)
                and node.args
                and _string(node.args[0])
            ):
                found.append((str(rel), node.lineno))
    return found


def payload_readers(root: Path = ROOT) -> list[tuple[str, int]]:
    """Places outside ``PAYLOAD`` reading a job's stored arguments (``job.args``), not ``Payload.of``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel == PAYLOAD:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "args"
                and isinstance(node.value, ast.Name)
                and node.value.id == "job"
            ):
                found.append((str(rel), node.lineno))
    return found
