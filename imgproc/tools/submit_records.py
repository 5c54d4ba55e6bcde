"""What ``imgproc submit`` sends and where each result goes: records from files, URLs and a CSV; options;
a result saved whole, a zip unpacked.

A record id is vendor text, so the file of its result is named by
``safe_name`` and anything shown on a terminal passes through ``shown``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from imgproc import identifiers
from imgproc.client import UnpackError, unpack_zip
from imgproc.identifiers import shown as shown  # vendor text on a terminal, escaped (submit_display)

#: Result extensions ``--resume`` looks for (the API's formats; jpeg in case a storage spells it so; a zip
#: kept by ``--keep-zip``).
FORMATS = ("png", "jpg", "jpeg", "webp", "zip")
#: The API's longest record id.
MAX_RECORD_ID = 191
UPLOADS = "uploads"


class UsageError(Exception):
    """Raised when the command line cannot run as given (exit status 2)."""


@dataclass
class Record:
    """One photo to send and, once known, what became of it."""

    record_id: str
    source: str  # a file's path or a URL
    is_url: bool
    file_name: str  # the result's file name, less its extension
    group: str = UPLOADS  # its progress bar: the uploads, or its bulk
    state: str = "pending"
    ended: bool = False
    job_id: str | None = None
    seconds: float | None = None
    saved: Path | None = None
    error: str = ""


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` as (key, value), the value parsed as JSON when it parses (``size=[300,400]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--option {text!r}: expected KEY=VALUE, e.g. format=png or size=[300,400]")
    try:
        return key.strip(), json.loads(raw)
    except ValueError:
        return key.strip(), raw  # a plain word: format=png, bgcolor=#ffffff


def safe_name(record_id: str) -> str:
    """A file name for a record id, which is vendor text: ``../a b`` gives ``a_b-<8 hex digits>``.

    Only ASCII letters, digits, ``.``, ``_`` and ``-`` are kept, never at the start a dot; a name
    that had to change ends with 8 hex digits of the id's sha256, so two ids never share a file.
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", record_id).lstrip(".")[:100].rstrip(".")
    if name == record_id:
        return name
    digest = hashlib.sha256(record_id.encode()).hexdigest()[:8]
    return f"{name}-{digest}" if name else digest


def _record(record_id: str, source: str, is_url: bool, where: str) -> Record:
    if not 1 <= len(record_id) <= MAX_RECORD_ID:
        raise UsageError(f"{where}: a record id has 1 to {MAX_RECORD_ID} characters")
    problem = identifiers.problem(record_id)
    if problem:  # the API would refuse the whole bulk it is in
        raise UsageError(f"{where}: the record id {shown(record_id)} {problem}")
    return Record(record_id, source, is_url, safe_name(record_id))


def _csv_records(path: Path) -> list[Record]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: the byte-order mark Excel writes
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--csv {path}: {exc}") from None
    records = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if reader.line_num == 1 and [c.strip().lower() for c in row] in (
            ["record_id", "url"],
            ["record_id", "image_url"],
        ):
            continue  # a header row
        if len(row) != 2:
            raise UsageError(f"{where}: expected record_id,url, got {len(row)} fields")
        record_id, url = row[0].strip(), row[1].strip()
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"{where}: {shown(url)!r} is not an http or https URL")
        records.append(_record(record_id, url, True, where))
    return records


def load_records(photos: Iterable[str], csv_file: str | None) -> list[Record]:
    """Files (record id: the file's stem), URLs (the stem of their path) and CSV rows, in that order."""
    records = []
    for arg in photos:
        if arg.startswith(("http://", "https://")):
            records.append(_record(Path(urlsplit(arg).path).stem or "photo", arg, True, arg))
        elif Path(arg).is_file():
            records.append(_record(Path(arg).stem, arg, False, arg))
        else:
            raise UsageError(f"{arg}: no such file")
    if csv_file:
        records += _csv_records(Path(csv_file))
    if not records:
        raise UsageError("nothing to submit: give files, URLs or --csv FILE")
    seen: dict[str, Record] = {}
    for record in records:
        other = seen.setdefault(record.file_name.casefold(), record)  # casefold: macOS' file names
        if other is not record:
            raise UsageError(
                f"{other.source} and {record.source} would both be saved as {record.file_name}.*: "
                "give each photo its own record id (a file's is its stem)"
            )
    return records


def existing_result(out: Path, record: Record) -> Path | None:
    """The record's result already in ``out`` (a download is renamed into place only when complete)."""
    for ext in FORMATS:
        if (out / f"{record.file_name}.{ext}").is_file():
            return out / f"{record.file_name}.{ext}"
    return None


def save_result(downloads: httpx.Client, url: str, stem: Path, fmt: str | None, keep_zip: bool) -> Path:
    """The bytes at ``url`` as ``<stem>.<fmt>``, written beside and renamed so that a file there is always
    whole; a zip (color.jpg + alpha.png) unpacked into ``<stem>.png``, the RGBA cut-out, unless ``keep_zip``.
    Raises ``UnpackError`` for a zip that holds no cut-out, which is then kept as it came."""
    ext = fmt if re.fullmatch(r"[a-z0-9]{1,5}", fmt or "") else "bin"
    target = stem.with_name(f"{stem.name}.{ext}")
    part = target.with_name(target.name + ".part")
    with downloads.stream("GET", url) as response:
        response.raise_for_status()
        with part.open("wb") as f:
            for chunk in response.iter_bytes():
                f.write(chunk)
    if ext == "zip" and not keep_zip:
        try:
            png = unpack_zip(part.read_bytes())
        except UnpackError:
            part.replace(target)
            raise
        target, zipped = stem.with_name(f"{stem.name}.png"), part
        part = target.with_name(target.name + ".part")
        part.write_bytes(png)
        zipped.unlink()
    part.replace(target)
    return target
