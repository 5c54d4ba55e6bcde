"""Stored values in JSON's own types: a job's result and meta are read back as JSON by every reader.

The worker stores a result only once ``plain`` has made it so (strict: a value
JSON has no form for fails the job, naming where it sits): a NumPy scalar or
array becomes its Python value (a ``numpy.bool_`` from a comparison is no
``bool`` to ``json``), a tuple a list, NaN and infinities null. The readers
(the status, the event streams, the webhooks' payloads, the batch view) make
whatever they find plain again with ``strict=False``: a value stored before
that check, or by a bug, is shown as text instead of failing every read.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Containers nested deeper than this are not JSON a job stores (and a cycle would never end).
MAX_DEPTH = 64


class NotPlain(TypeError):
    """Raised when a value to store has no JSON form (``plain`` with ``strict``)."""


def plain(value: Any, *, strict: bool = True) -> Any:
    """``value`` in JSON's own types; what has no JSON form raises ``NotPlain``, or becomes text."""
    return _plain(value, strict, "", 0)


def _plain(value: Any, strict: bool, where: str, depth: int) -> Any:
    if value is None or type(value) in (str, int, bool):
        return value
    if isinstance(value, float):  # numpy.float64 too: a float subclass
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (str, int)):  # their subclasses (enums, numpy.str_): the plain value
        return str(value) if isinstance(value, str) else int(value)
    if depth >= MAX_DEPTH:
        return _refused(value, strict, where, f"is nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, (bool, int, float)) or key is None:
                key = json.dumps(key)  # as json.dumps writes such a key: 1 as "1", True as "true"
            elif not isinstance(key, str):
                key = _refused(key, strict, f"{where} (a key)", "is not a JSON type")
            out[str(key)] = _plain(item, strict, f"{where}.{key}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, strict, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    tolist = getattr(value, "tolist", None)  # NumPy's scalars and arrays, without importing NumPy here
    if callable(tolist):
        return _plain(tolist(), strict, where, depth + 1)
    return _refused(value, strict, where, "is not a JSON type")


def _refused(value: Any, strict: bool, where: str, why: str) -> str:
    kind = type(value).__name__
    if strict:
        raise NotPlain(f"{where.lstrip('.') or 'the value'}: {kind} {why}")
    try:
        shown = str(value)
    except Exception:  # a broken __str__ of a stored object: its type still says what it was
        shown = "?"
    return f"<{kind}: {shown[:200]}>"
