"""The documentation's settings tables, made from ``Settings`` (imgproc/config.py) so they cannot drift.

A table sits in a page between ``<!-- settings-table -->`` (every setting) or ``<!-- settings-table:
device batch -->`` (those fields) and ``<!-- settings-table: end -->``. Its rows are each field the
environment sets: the variable ``Settings.from_env`` reads, the field's default, and the ``#:``
comment above it in config.py, with the links and notes of ``MORE``. A field without a comment of its
own shares the row of the field above it (``fetch_connect_timeout``, ``fetch_read_timeout``, ...).

The tables are checked in, so docs/*.md read as they are on GitHub. As an MkDocs hook (mkdocs.yml's
``hooks:``) this module checks each at build time: one that differs from ``Settings`` is a warning,
which fails ``mkdocs build --strict`` (``make lint``), and the site shows the table made now. Run it
to rewrite them::

    .venv/bin/python docs/hooks/settings_table.py
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from imgproc.config import ENV_NAMES, ROOT, Settings

DOCS = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "imgproc" / "config.py"
log = logging.getLogger(f"mkdocs.hooks.{Path(__file__).stem}")

#: ``<!-- settings-table -->`` or ``<!-- settings-table: field field -->``, the table, the end mark.
MARKED = re.compile(
    r"^<!-- settings-table(?::(?P<fields>[ \w]+))? -->\n(?P<table>.*?)^<!-- settings-table: end -->$",
    re.M | re.S,
)

#: What a row says beyond its field's comment: where the docs say more, what the comment leaves out.
MORE = {
    "redis_url": "`unix:///path.sock` works too.",
    "redis_sentinels": "See [Running on many machines](many-machines.md).",
    "public_url": "See [Running the parts separately](running.md).",
    "cloudinary_url": "`?upload_prefix=` for another endpoint.",
    "cache_dir": "Where `make models` keeps its downloads.",
    "bg_models": "Unset: the one `IMGPROC_BG_MODEL` names. `isnet-general-use-int8`: see "
    "[ISNet variants on the CPU](models.md#isnet-variants-on-the-cpu-issue-14).",
    "face_landmark_model": "Also the default crop's head.",
    "face_min_confidence": "Over the whole frame; a face found in a window of it needs 0.8 "
    "([The API](api.md)).",
    "device": "The warning only where an NVIDIA driver or the gpu extra is there; on a machine without "
    "a GPU, silence. See [GPU](gpu.md).",
    "precision": "The upcast is exact.",
    "batch": "On a GPU; see [GPU](gpu.md).",
    "threads": "ONNX Runtime's and OpenCV's.",
    "workers_per_host": "See [Running the parts separately](running.md).",
    "heartbeat_interval": "Also how often each worker looks for abandoned jobs; such a job is queued "
    "again at once.",
    "maintenance_interval": "Abandoned jobs with no attempt left fail here.",
    "job_timeout": "It is retried.",
    "retry_backoff": "With the defaults: 5 s, 10 s.",
    "database_wait": "It is tried again 1, 2, 4, 8 s apart.",
    "failure_ttl": "A batch too.",
    "max_image_bytes": "A fetched one over it fails its job with `image_too_large`; an uploaded one "
    "is refused at once with `413 payload_too_large`.",
    "max_output_pixels": "`size` or `resize` over it is `400 invalid_options` naming it; a face crop's "
    "frame over it fails `image_too_large` ([Limits](limits.md)).",
    "max_request_bytes": "Refused with `413 payload_too_large` before it is read.",
    "max_bulk_items": "More is `413 too_many_items`.",
    "fetch_deadline": "The whole fetch includes its redirects.",
    "fetch_allow_hosts": "Comma-separated.",
    "fetch_blocked_ports": "The default: SSH, telnet, SMTP, POP3/IMAP, LDAP, SMB, memcached, Redis, MySQL, "
    "PostgreSQL, MSSQL, Oracle, MongoDB, Elasticsearch, etcd, ZooKeeper, Kafka, AMQP, MQTT, NATS "
    "(`imgproc/config.py: SERVICE_PORTS`). See [Untrusted URLs and files](security.md).",
    "limit_global": "All `/api/` requests of a vendor. See [Limits and fair share](limits.md).",
    "limit_bg_removal": "Jobs of a vendor that run the background-removal model: `remove-bg`, and "
    "`crop-face` with `remove_background` or a preset.",
    "limit_session_reads": "A zip download counts against `IMGPROC_LIMIT_GLOBAL`.",
    "vendor_concurrency": "The fair share: see [Limits and fair share](limits.md).",
    "vendor_upload_bytes": "Else at least `IMGPROC_MAX_IMAGE_BYTES`.",
    "db_max_fields": "Also of a write-back target without `max_fields`.",
    "writeback_file": "`env:NAME` in it reads a database URL from the environment.",
    "webhook_thread": "See [Webhooks](webhooks.md).",
    "webhook_vendor_concurrency": "Each vendor's wait in a lane of their own, retries too "
    "([Limits and fair share](limits.md)).",
}

#: Where a comment in config.py points at the README, the page that now holds what it names.
MOVED = {
    "see the README's GPU section": "see [GPU](gpu.md)",
    "(README: Limits, the edge it keeps)": "([Limits](limits.md): the edge it keeps)",
    '(README: "Writing results into your own tables")': "([Writing results into your own tables]"
    "(writeback.md))",
}


@dataclass
class Row:
    fields: list[str]
    comment: str


def env_name(field: str) -> str:
    """The variable ``Settings.from_env`` reads for a field."""
    return ENV_NAMES.get(field, "IMGPROC_" + field.upper())


def settable() -> set[str]:
    """The fields ``Settings.from_env`` sets (``cores`` and ``environ`` are made, not read)."""
    return {f.name for f in dataclasses.fields(Settings) if f.default_factory is dataclasses.MISSING}


def rows() -> list[Row]:
    """Every field the environment sets, grouped as config.py comments them."""
    lines = CONFIG.read_text().splitlines()
    tree = ast.parse(CONFIG.read_text())
    (cls,) = (node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings")
    found: list[Row] = []
    previous = -1
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name, at = node.target.id, node.lineno - 1
        if name not in settable():
            continue
        comment = []
        while lines[at - 1 - len(comment)].strip().startswith("#:"):
            comment.insert(0, lines[at - 1 - len(comment)].strip()[2:].strip())
        if not comment and found and previous == at - 1:
            found[-1].fields.append(name)
        elif not comment:
            raise ValueError(f"imgproc/config.py:{node.lineno}: setting {name} has no #: comment")
        else:
            found.append(Row([name], " ".join(comment)))
        previous = node.end_lineno - 1
    assert {f for row in found for f in row.fields} == settable()
    return found


def shown_default(field: str) -> str:
    """A default as the environment would say it, the checkout and the home folder named."""
    value = next(f.default for f in dataclasses.fields(Settings) if f.name == field)
    if isinstance(value, bool):
        text = "1" if value else "0"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, tuple):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    if not text:
        return "empty"
    text = text.replace(str(ROOT), "<checkout>").replace(str(Path.home()), "~")
    shown = f"`{text}`"
    if field.endswith("_bytes") and isinstance(value, int) and value >= 1024 * 1024:
        shown += f" ({value / 1024 / 1024:g} MiB)"
    return shown


def described(row: Row) -> str:
    """The row's comment in Markdown, a field it names by its variable, then ``MORE``'s notes."""
    text = re.sub(r"``(.+?)``", r"`\1`", row.comment)
    text = re.sub(r"`([a-z_]+)`", lambda m: f"`{env_name(m[1])}`" if m[1] in settable() else m[0], text)
    for old, new in MOVED.items():
        text = text.replace(old, new)
    more = [MORE[f] for f in row.fields if f in MORE]
    return " ".join([text, *more]).replace("|", "\\|")


def table(only: list[str] | None = None) -> str:
    """The Markdown table of every setting, or of the rows holding the fields ``only`` names."""
    unknown = set(MORE) - {f for row in rows() for f in row.fields}
    if unknown:
        raise ValueError(f"MORE names fields Settings does not have: {sorted(unknown)}")
    chosen = [row for row in rows() if only is None or set(row.fields) & set(only)]
    if only is not None and {f for row in chosen for f in row.fields} < set(only):
        raise ValueError(f"not settings: {sorted(set(only) - {f for row in chosen for f in row.fields})}")
    out = ["| variable | default | what it does |", "| --- | --- | --- |"]
    for row in chosen:
        names = ", ".join(f"`{env_name(f)}`" for f in row.fields)
        defaults = ", ".join(shown_default(f) for f in row.fields)
        out.append(f"| {names} | {defaults} | {described(row)} |")
    return "\n".join(out) + "\n"


def refreshed(markdown: str) -> str:
    """The page with each marked table made again from Settings."""

    def made(match: re.Match) -> str:
        fields = match["fields"].split() if match["fields"] else None
        head = match.group(0).split("\n", 1)[0]
        return f"{head}\n{table(fields)}<!-- settings-table: end -->"

    return MARKED.sub(made, markdown)


def on_page_markdown(markdown: str, page, **_) -> str:
    """MkDocs hook: warn (a failure under --strict) when a page's table is not Settings' own."""
    fresh = refreshed(markdown)
    if fresh != markdown:
        log.warning(
            "%s: a settings table differs from Settings (imgproc/config.py); "
            "run .venv/bin/python docs/hooks/settings_table.py",
            page.file.src_uri,
        )
    return fresh


def main() -> int:
    """Rewrite every page's tables; print the pages that changed."""
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        fresh = refreshed(text)
        if fresh != text:
            page.write_text(fresh)
            print(f"rewrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
