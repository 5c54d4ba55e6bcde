"""What a vendor's columns take: the check of a target against its table, keys and values as the columns want.

Split from ``writeback``, which runs the statements: these read only a reflected column's type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

import sqlalchemy as sa

from imgproc.errors import PermanentError

from .writeback_config import Target, Value

#: A result URL fits this many characters; a shorter VARCHAR is refused by the check.
URL_LENGTH = 255


def _python_type(column: sa.Column) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:  # a dialect's own type: accept what the database accepts
        return None


def _fits(kind: type, column: sa.Column) -> bool:
    """Whether a value of ``kind`` may be stored in ``column``."""
    target = _python_type(column)
    if target is None:
        return True
    if kind is bool:
        return target in (bool, int)
    if kind is int:
        return target in (int, float, decimal.Decimal, str)
    if kind is float:
        return target in (float, decimal.Decimal)
    if kind in (dt.datetime, dt.date):
        return target in (dt.datetime, dt.date, str)
    return target is str


def problems_of(target: Target, table: sa.Table, located: bool = True) -> list[str]:
    """What does not match between ``target`` and its reflected ``table``: missing columns, misfit values.

    ``located`` puts the file and line before each (not in a job's error: a vendor reads that).
    """
    problems = []
    columns = table.c
    at = target.at if located else str
    if target.key not in columns:
        problems.append(f"{at('key')}: the table has no column {target.key}")
    elif _python_type(columns[target.key]) not in (int, str, None):
        # A DECIMAL or DATE key would match '42.0' or '2026-1-1' to another row: no canonical form here.
        problems.append(
            f"{at('key')}: {target.key} is {columns[target.key].type}; only an integer or text key "
            "matches a record id exactly"
        )
    for name, value in target.where.items():
        if name not in columns:
            problems.append(f"{at('where.' + name)}: the table has no column {name}")
        elif not _fits(type(value), columns[name]):
            problems.append(f"{at('where.' + name)}: {value!r} does not fit {columns[name].type}")
    for job_type, mapping in target.columns.items():
        for name, value in mapping.items():
            where = at(f"columns.{job_type}.{name}")
            if name not in columns:
                problems.append(f"{where}: the table has no column {name}")
                continue
            problem = _value_problem(value, columns[name])
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


def _value_problem(value: Value, column: sa.Column) -> str | None:
    if not _fits(value.kind, column):
        what = f"{{{value.only}}} ({value.kind.__name__})" if value.only else repr(value.raw)
        return f"{what} does not fit {column.type}"
    length = getattr(column.type, "length", None)
    if length and value.kind is str:
        if value.only == "url" and length < URL_LENGTH:
            return f"{column.type} is shorter than a result URL may be ({URL_LENGTH})"
        if value.only == "job_id" and length < 36:
            return f"{column.type} is shorter than a job id (36)"
        if value.only is None and "{" not in str(value.raw) and len(value.raw) > length:
            return f"{value.raw!r} is longer than {column.type}"
    return None


def key_value(record_id: str, column: sa.Column) -> Any:
    """The record id as the key column's type; None when no row can have it (an id 'abc' of an INT key).

    An INT key matches only a number's canonical form: '042', '-0' or '+42' would be compared as 42
    or 0 and written into that row (MariaDB would compare '42abc' to 42 too). A number past the
    column's 64 bits is ``database_failed``: the driver refused it, and the job failed ``internal``.
    """
    if _python_type(column) is not int:
        return record_id
    if not re.fullmatch(r"0|-?[1-9][0-9]*", record_id):
        return None
    key = int(record_id)
    low, high = (0, 2**64 - 1) if getattr(column.type, "unsigned", False) else (-(2**63), 2**63 - 1)
    if not low <= key <= high:
        raise PermanentError(
            f"record id {record_id} is out of the range of the key column {column.name} ({column.type})",
            code="database_failed",
        )
    return key


def bind(value: Any, column: sa.Column) -> Any:
    """A rendered value as its column takes it: text columns get text."""
    if value is not None and _python_type(column) is str and not isinstance(value, str):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else str(value)
    return value
