"""The write-back file (``IMGPROC_WRITEBACK_FILE``): one target table per vendor, read and checked.

    [vendors.acme]
    database_url = "env:ACME_DB_URL"      # or the URL itself
    table = "data_records"
    key = "id"                            # matched against the job's record_id
    where = { tenant_id = "acme" }        # the only rows this vendor may touch
    max_fields = 10                       # columns per UPDATE (default IMGPROC_DB_MAX_FIELDS)

    [vendors.acme.columns.remove-bg]      # per job type: column = value
    photo_url = "{url}"
    processed = true

Every mistake is a ``WritebackInvalid`` naming the file, the line and the key;
tomllib reports lines for syntax errors only, so ``_Lines`` finds the line of a
key by reading the text. Database URLs never appear in a message.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from imgproc.errors import WritebackInvalid
from imgproc.jobtypes import JOB_TYPES

#: What a column's value may name, and the Python type each one has.
PLACEHOLDERS = {
    "url": str,
    "width": int,
    "height": int,
    "format": str,
    "bytes": int,
    "model": str,
    "job_id": str,
    "now": dt.datetime,
}
#: Job types whose results carry no model name (the table says: ``JobType.names_model``).
NO_MODEL = frozenset(jt.name for jt in JOB_TYPES.values() if not jt.names_model)
#: Literal values a column may be set to.
SCALARS = (str, bool, int, float, dt.datetime, dt.date)
VENDOR_KEYS = frozenset({"database_url", "table", "key", "where", "max_fields", "columns"})


@dataclass(frozen=True)
class Value:
    """A column's value: a literal, one placeholder (bound as its own type), or a string template."""

    raw: Any
    #: The placeholder when the value is exactly one ("{width}"), so an integer stays an integer.
    only: str | None = None

    @property
    def kind(self) -> type:
        if self.only is not None:
            return PLACEHOLDERS[self.only]
        return type(self.raw)

    def render(self, values: Mapping[str, Any]) -> Any:
        if self.only is not None:
            return values[self.only]
        if isinstance(self.raw, str):
            return self.raw.format_map({k: "" if v is None else v for k, v in values.items()})
        return self.raw


@dataclass(frozen=True)
class Target:
    """One vendor's table: where its jobs' results are written, and which of its rows they may touch."""

    vendor: str
    database_url: str = field(repr=False)
    table: str
    key: str
    where: dict[str, Any]
    max_fields: int
    #: Job type -> column -> value.
    columns: dict[str, dict[str, Value]]
    #: ``file:line`` of the vendor's table, for messages.
    origin: str
    #: ``file:line`` of each key below the vendor's table: ``where.tenant_id``, ``columns.crop-face.x``.
    lines: dict[str, str] = field(default_factory=dict, compare=False)

    def at(self, key: str) -> str:
        """``file:line: key``, for a message about ``key`` (a path below the vendor's table)."""
        return f"{self.lines.get(key, self.origin)}: {key}"

    @property
    def shown_url(self) -> str:
        """The database URL with its password hidden: what messages and logs may show."""
        return sa.make_url(self.database_url).render_as_string(hide_password=True)


class _Lines:
    """The line of each table header and key of a TOML text (tomllib gives none for what it accepts)."""

    HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    KEY = re.compile(
        r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
    )

    def __init__(self, text: str):
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self.HEADER.match(line)
            if header:
                table = self._path(header.group(1))
                self.lines.setdefault(table, number)
                continue
            key = self.KEY.match(line)
            if key:
                path = table + self._path(key.group(1))
                for end in range(len(table) + 1, len(path) + 1):  # a dotted key opens its tables too
                    self.lines.setdefault(path[:end], number)

    @staticmethod
    def _path(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", dotted)
        return tuple(next(p for p in part if p) if any(part) else "" for part in parts)

    def line(self, *path: str) -> int | None:
        """The line of ``path``, or of the nearest table above it that has one."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


class _Reader:
    """Checks one parsed file, raising ``WritebackInvalid`` at the first mistake, with its line."""

    def __init__(self, path: Path, text: str, environ: Mapping[str, str], default_max_fields: int):
        self.path = path
        self.lines = _Lines(text)
        self.environ = environ
        self.default_max_fields = default_max_fields

    def fail(self, path: tuple[str, ...], message: str) -> WritebackInvalid:
        line = self.lines.line(*path)
        where = f"{self.path}:{line}" if line else str(self.path)
        return WritebackInvalid(f"{where}: {'.'.join(path)}: {message}")

    def targets(self, data: dict) -> dict[str, Target]:
        extra = sorted(set(data) - {"vendors"})
        if extra:
            raise self.fail((extra[0],), "unknown key (the file has [vendors.NAME] tables only)")
        vendors = data.get("vendors", {})
        if not isinstance(vendors, dict):
            raise self.fail(("vendors",), "must be a table of [vendors.NAME] tables")
        return {name: self.target(name, table) for name, table in vendors.items()}

    def target(self, vendor: str, table: Any) -> Target:
        at = ("vendors", vendor)
        if not isinstance(table, dict):
            raise self.fail(at, "must be a table")
        unknown = sorted(set(table) - VENDOR_KEYS)
        if unknown:
            raise self.fail((*at, unknown[0]), f"unknown key (known: {', '.join(sorted(VENDOR_KEYS))})")
        for name in ("database_url", "table", "key"):
            if not isinstance(table.get(name), str) or not table[name].strip():
                raise self.fail((*at, name), "is required, a non-empty string")
        url = self.database_url(at, table["database_url"])
        where = table.get("where", {})
        if not isinstance(where, dict):
            raise self.fail((*at, "where"), 'must be a table of column = value, e.g. { tenant_id = "acme" }')
        for column, value in where.items():
            if not isinstance(value, SCALARS):
                raise self.fail((*at, "where", column), "must be a string, a number or a boolean")
        max_fields = table.get("max_fields", self.default_max_fields)
        if isinstance(max_fields, bool) or not isinstance(max_fields, int) or max_fields < 1:
            raise self.fail((*at, "max_fields"), "must be a whole number of at least 1")
        columns = table.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise self.fail((*at, "columns"), "needs at least one [vendors.NAME.columns.JOB-TYPE] table")
        mapped = {
            job_type: self.mapping((*at, "columns", job_type), job_type, mapping, table["key"], where)
            for job_type, mapping in columns.items()
        }
        line = self.lines.line(*at)
        keys = ["key", *(f"where.{c}" for c in where)]
        keys += [f"columns.{t}.{c}" for t, mapping in mapped.items() for c in mapping]
        return Target(
            vendor=vendor,
            database_url=url,
            table=table["table"],
            key=table["key"],
            where=dict(where),
            max_fields=max_fields,
            columns=mapped,
            origin=f"{self.path}:{line}" if line else str(self.path),
            lines={k: f"{self.path}:{self.lines.line(*at, *k.split('.'))}" for k in keys},
        )

    def database_url(self, at: tuple[str, ...], raw: str) -> str:
        if raw.startswith("env:"):
            name = raw[4:].strip()
            url = self.environ.get(name, "")
            if not url:
                raise self.fail((*at, "database_url"), f"the environment variable {name} is not set")
        else:
            url = raw
        try:
            sa.make_url(url)
        except sa.exc.ArgumentError:  # its message would repeat the URL, password and all
            raise self.fail((*at, "database_url"), "is not a SQLAlchemy database URL") from None
        return url

    def mapping(
        self, at: tuple[str, ...], job_type: str, mapping: Any, key: str, where: dict
    ) -> dict[str, Value]:
        if job_type not in JOB_TYPES:
            raise self.fail(at, f"unknown job type (known: {', '.join(JOB_TYPES)})")
        if not isinstance(mapping, dict) or not mapping:
            raise self.fail(at, "must be a table of at least one column = value")
        values = {}
        for column, raw in mapping.items():
            if column == key or column in where:
                # Writing the key or a where column would move the row out of (or into) the vendor's rows.
                raise self.fail((*at, column), "is the key or a where column: it cannot be written")
            values[column] = self.value((*at, column), job_type, raw)
        return values

    def value(self, at: tuple[str, ...], job_type: str, raw: Any) -> Value:
        if not isinstance(raw, SCALARS):
            raise self.fail(at, "must be a string, a number, a boolean or a date")
        if not isinstance(raw, str):
            return Value(raw)
        try:
            names = [name for _text, name, spec, conv in string.Formatter().parse(raw) if name is not None]
            specs = [(spec, conv) for _text, name, spec, conv in string.Formatter().parse(raw) if name]
        except ValueError as exc:  # a lone { or }
            raise self.fail(at, f"{exc} (write {{{{ or }}}} for a brace)") from None
        for name in names:
            if name not in PLACEHOLDERS:
                raise self.fail(at, f"unknown placeholder {{{name}}} (known: {', '.join(PLACEHOLDERS)})")
            if name == "model" and job_type in NO_MODEL:
                raise self.fail(at, f"{job_type} results name no model: {{model}} has no value here")
        if any(spec or conv for spec, conv in specs):
            raise self.fail(at, "placeholders take no format spec or conversion")
        only = names[0] if len(names) == 1 and raw == f"{{{names[0]}}}" else None
        return Value(raw, only)


def load(path: str | Path, environ: Mapping[str, str], default_max_fields: int = 10) -> dict[str, Target]:
    """Read and check the write-back file; ``environ`` resolves ``env:NAME`` database URLs."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WritebackInvalid(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line 9, column 13)"
        line = re.search(r"at line (\d+)", str(exc))
        raise WritebackInvalid(f"{path}:{line.group(1) if line else '?'}: not valid TOML: {exc}") from None
    return _Reader(path, text, environ, default_max_fields).targets(data)
