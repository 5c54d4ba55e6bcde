"""The operator's pauses (API.md "Operator controls"): a queue's or a vendor's jobs wait in their lanes.

POST /api/image-queue/pause     {"queue": "bg-removal"} or {"vendor": "acme"}: paused, its fed jobs held back
POST /api/image-queue/resume    the same body: resumed, its lanes fed in their order
GET  /api/image-queue/pauses    the paused queues and vendors, each with since when

Each action is in the audit log (``operator.record``), written before it is taken.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from imgproc.adapters.vendors import Vendors
from imgproc.errors import InvalidRequest, NotFound
from imgproc.jobtypes import QUEUES
from imgproc.queueing.pauses import KINDS, Pauses

from .operator import operators_only, record
from .services import services

bp = Blueprint("pauses", __name__, url_prefix="/api/image-queue")
bp.before_request(operators_only)


def _target() -> tuple[str, str]:
    """The body's ``("queue", name)`` or ``("vendor", name)``; 400 naming the field, 404 for no vendor."""
    body = request.get_json(silent=True)
    fields = sorted(body) if isinstance(body, dict) else []
    if len(fields) != 1 or fields[0] not in KINDS:
        wrong = next((f for f in fields if f not in KINDS), "queue")  # the field to fix
        raise InvalidRequest(
            f'send {{"queue": "bg-removal"}} or {{"vendor": "acme"}}, not the fields {fields}',
            details={"field": wrong},
        )
    kind, name = fields[0], body[fields[0]]
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{kind} must be a name", details={"field": kind})
    if kind == "queue" and name not in QUEUES:
        raise InvalidRequest(f"no queue {name!r} (known: {', '.join(QUEUES)})", details={"field": "queue"})
    if kind == "vendor" and name not in {v.name for v in Vendors(services().engine).list()}:
        raise NotFound(f"no vendor {name!r}")
    return kind, name


def _pauses() -> Pauses:
    svc = services()
    return Pauses.of(svc.conn, svc.settings)


@bp.post("/pause", defaults={"action": "pause"})
@bp.post("/resume", defaults={"action": "resume"})
def act(action: str):
    kind, name = _target()
    record(f"{kind}.{action}", f"{kind}:{name}")
    if action == "pause":
        return jsonify({kind: name, "paused": True, "held_back": _pauses().pause(kind, name)})
    return jsonify({kind: name, "paused": False, "was_paused": _pauses().resume(kind, name)})


@bp.get("/pauses")
def listing():
    return jsonify(_pauses().listing())
