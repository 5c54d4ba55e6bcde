"""The operator's routes on vendors (API.md "Operator controls"; the page's Vendors card).

GET  /api/image-queue/vendors                 every vendor: name, operator, plan, disabled
POST /api/image-queue/vendors                 {"name": "acme", "operator": false}: 201, its key shown once
POST /api/image-queue/vendors/<name>/rotate   a new key (the old one stops working within 5 s), shown once

Plans, disabling and overrides are ``PUT /api/image-queue/vendors/<name>`` (``imgproc.api.plans``).
Each action is in the audit log (``operator.record``), written before it is taken.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from imgproc.adapters.vendors import Vendors
from imgproc.errors import Conflict, InvalidRequest, NotFound

from .operator import operators_only, record
from .services import services

bp = Blueprint("vendors", __name__, url_prefix="/api/image-queue")
bp.before_request(operators_only)


def _vendors() -> Vendors:
    return Vendors(services().engine)


@bp.get("/vendors")
def vendor_list():
    return jsonify(
        {
            "vendors": [
                {"name": v.name, "operator": v.operator, "plan": v.plan, "disabled": v.disabled}
                for v in _vendors().list()
            ]
        }
    )


@bp.post("/vendors")
def vendor_add():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest('send a JSON object: {"name": ..., "operator": false}')
    unknown = sorted(set(body) - {"name", "operator"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}", details={"field": unknown[0]})
    name, operator = body.get("name"), body.get("operator", False)
    if not isinstance(name, str) or not name:
        raise InvalidRequest("name is required", details={"field": "name"})
    if not isinstance(operator, bool):
        raise InvalidRequest("operator must be true or false", details={"field": "operator"})
    vendors = _vendors()
    if name in {v.name for v in vendors.list()}:
        raise Conflict(f"vendor {name!r} already exists")
    record("vendor.add", f"vendor:{name}", {"operator": True} if operator else None)
    try:
        key = vendors.add(name, operator=operator)
    except ValueError as exc:  # a bad name, or a removed vendor's that is not purged
        raise InvalidRequest(str(exc), details={"field": "name"}) from None
    return jsonify({"name": name, "operator": operator, "api_key": key}), 201


@bp.post("/vendors/<name>/rotate")
def vendor_rotate(name: str):
    vendors = _vendors()
    if name not in {v.name for v in vendors.list()}:
        raise NotFound(f"no vendor {name!r}")
    record("key.rotate", f"vendor:{name}")
    return jsonify({"name": name, "api_key": vendors.rotate(name)})
