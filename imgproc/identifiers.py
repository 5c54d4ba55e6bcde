"""Identifiers a vendor chooses (record ids, idempotency keys): what they may hold, and how one is shown.

A newline or an escape sequence in an id forged a line in a worker's log and
set an operator's terminal title and colours (``imgproc jobs failed``); a lone
surrogate cannot be encoded for Redis or the database. The API refuses both at
enqueue (``problem``); a value stored before that is escaped wherever it is
printed (``shown``).
"""

from __future__ import annotations

import re

#: C0 and C1 control characters (newline, ESC, BEL, DEL...), the Unicode line and paragraph
#: separators, and lone surrogates (valid in a Python string, not in UTF-8).
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def problem(value: str) -> str | None:
    """Why ``value`` cannot be an identifier (``must ...``), or None when it can."""
    match = UNPRINTABLE.search(value)
    if match is None:
        return None
    char = match.group()
    if "\ud800" <= char <= "\udfff":
        return f"must be valid Unicode text (a lone surrogate {shown(char)} at position {match.start()})"
    return f"must not hold control characters ({shown(char)} at position {match.start()})"


def shown(text: str) -> str:
    """``text`` with its unprintable characters as Python escapes (``\\n``, ``\\x1b``): one harmless line."""
    return UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
