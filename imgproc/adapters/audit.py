"""The audit log (API.md "Operator controls"): every operator action, from the API, the page or the CLI.

    audit = Audit(engine)
    audit.record(Actor.of_cli(), "plan.update", "plan:premium", {"weight": 2})
    audit.entries(limit=50)        # newest first: {"at", "who", "action", "target", "details", "source"}

``action`` is ``<kind>.<verb>`` (``plan.create``, ``vendor.disable``, ``queue.pause``,
``job.stop``, ``jobs.cancel``, ``key.rotate``, ``webhook.redeliver``); ``target`` names what was
acted on as ``<kind>:<name>`` (``vendor:acme``, ``queue:bg-removal``, ``job:5f0c...``,
``filter:state=failed``). A failed write is a ``TransientError`` (``database_failed``): the action
it records has not been taken yet, so its caller refuses it rather than act unrecorded.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import socket
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .db import audit_log
from .sqlerrors import sql_errors

#: Most entries one listing returns.
MAX_ENTRIES = 500


@dataclass(frozen=True)
class Actor:
    """Who acted, and from where."""

    who: str
    source: str

    @classmethod
    def of_cli(cls) -> Actor:
        """The person at a shell: ``cli:<user>@<host>``."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(f"cli:{user}@{socket.gethostname()}", "cli")

    @classmethod
    def of_vendor(cls, vendor: str, address: str | None) -> Actor:
        """An operator key (the API or the page), from the request's address."""
        return cls(vendor, address or "")


class Audit:
    """Writes and lists the audit log in the database."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def record(self, actor: Actor, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        row = {
            "at": dt.datetime.now(dt.UTC),
            "who": actor.who[:191],
            "action": action[:64],
            "target": target[:255],
            "details": json.dumps(details, sort_keys=True, default=str) if details else None,
            "source": actor.source[:191],
        }
        with sql_errors(self.engine.url, "the audit log"), self.engine.begin() as conn:
            conn.execute(audit_log.insert().values(**row))

    def entries(
        self, limit: int = 100, action: str | None = None, target: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` entries first, of one action (or its kind, ``plan``) or target when given."""
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(min(max(limit, 1), MAX_ENTRIES))
        if action:
            query = query.where(
                audit_log.c.action == action
                if "." in action
                else audit_log.c.action.like(f"{_escaped(action)}.%", escape="\\")
            )
        if target:
            query = query.where(audit_log.c.target == target)
        with sql_errors(self.engine.url, "the audit log"), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            {
                "at": row["at"].isoformat().replace("+00:00", "Z"),
                "who": row["who"],
                "action": row["action"],
                "target": row["target"],
                "details": _details(row["details"]),
                "source": row["source"] or "",
            }
            for row in rows
        ]


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _details(raw: str | None) -> dict[str, Any]:
    """The stored details; a value that is not a JSON object (written by hand) is shown as text."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"text": raw}
    return value if isinstance(value, dict) else {"value": value}
