"""Plain text tables of the operator's commands (``imgproc jobs``, ``queues``, ``webhooks``)."""

from __future__ import annotations

from imgproc.identifiers import shown


def table(headers: tuple[str, ...], rows: list[tuple]) -> str:
    """Plain text columns two spaces apart, numbers aligned right; ``-`` for missing values.

    Control characters are escaped: a record id stored with an escape sequence would drive the terminal.
    """
    cells = [list(headers)] + [["-" if v is None or v == "" else shown(str(v)) for v in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(headers))]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric, strict=True)
        ).rstrip()
        for line in cells
    )
