"""The operator's routes on plans and on a vendor's plan (API.md "Operator controls"; 403 for a vendor).

GET    /api/image-queue/plans              every plan, and the default plan (the environment's)
POST   /api/image-queue/plans              {"name": "premium", "limits": {"all": "1000 per 15 minutes", ...},
                                           "weight": 2, "max_running": 8, "max_items": 500}: 201
PUT    /api/image-queue/plans/<name>       the values given are set, null clears one (the default's again)
DELETE /api/image-queue/plans/<name>       409 while a vendor is on it
GET    /api/image-queue/vendors/<name>     its plan, overrides, disabled flag and the values in force
PUT    /api/image-queue/vendors/<name>     {"plan": "premium"} (null: the default plan), {"disabled": true},
                                           {"overrides": {"max_items": 800}} (a plan's fields; null clears)

Each change is audited before it is taken (``operator.record``), then published to Redis
(``imgproc.queueing.planfeed``): every API process and worker follows within 5 s.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from imgproc.adapters.plans import CLEAR_ALL, Effective, Plans, default_terms, read_changes
from imgproc.errors import InvalidRequest
from imgproc.queueing import planfeed

from .listings import LIMITS
from .operator import operators_only, record
from .ratelimits import RequestLimits
from .services import services

bp = Blueprint("plans", __name__, url_prefix="/api/image-queue")
bp.before_request(operators_only)

VENDOR_FIELDS = ("plan", "disabled", "overrides")


def _plans() -> Plans:
    return Plans(services().engine)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("send a JSON object", details={"field": "body"})
    return body


def _record(action: str, target: str, details: dict | None = None) -> None:
    """Redis first, where the change will be published (503 when it is down: nothing done), then the log."""
    services().conn.ping()
    record(action, target, details)


def _publish(plans: Plans) -> None:
    """Write every vendor's plan values to Redis, where every process reads them (this one at once)."""
    version = planfeed.publish(services().conn, plans.published())
    limits: RequestLimits = current_app.extensions[LIMITS]
    limits.plans.moved(version)


@bp.get("/plans")
def plan_list():
    default = default_terms(services().settings)
    return jsonify({"plans": [p.to_dict() for p in _plans().list()], "default": default.to_dict()})


@bp.post("/plans")
def plan_create():
    body = dict(_body())
    name = body.pop("name", None)
    if not isinstance(name, str) or not name:
        raise InvalidRequest("name is required", details={"field": "name"})
    changes = read_changes(body)
    plans = _plans()
    plans.require_new(name)  # refused before anything is recorded
    _record("plan.create", f"plan:{name}", body)
    plan = plans.create(name, changes)
    _publish(plans)  # nobody is on it yet; the version moves all the same
    return jsonify(plan.to_dict()), 201


@bp.put("/plans/<name>")
def plan_update(name: str):
    body = dict(_body())
    if body.pop("name", name) != name:
        raise InvalidRequest(
            "a plan cannot be renamed: name must be the one in the path", details={"field": "name"}
        )
    changes = read_changes(body)
    plans = _plans()
    plans.get(name)  # 404 before anything is recorded
    _record("plan.update", f"plan:{name}", body)
    plan = plans.update(name, changes)
    _publish(plans)
    return jsonify(plan.to_dict())


@bp.delete("/plans/<name>")
def plan_delete(name: str):
    plans = _plans()
    plans.require_unused(name)
    _record("plan.delete", f"plan:{name}")
    plans.delete(name)
    _publish(plans)
    return jsonify({"deleted": name})


@bp.get("/vendors/<name>")
def vendor_terms(name: str):
    return jsonify(_vendor_view(_plans(), name))


@bp.put("/vendors/<name>")
def vendor_set(name: str):
    body = _body()
    unknown = sorted(set(body) - set(VENDOR_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r} (known: {', '.join(VENDOR_FIELDS)})", details={"field": unknown[0]}
        )
    if not body:
        raise InvalidRequest(f"give one of {', '.join(VENDOR_FIELDS)}", details={"field": "body"})
    plan = body.get("plan")
    if "plan" in body and plan is not None and not isinstance(plan, str):
        raise InvalidRequest(
            "plan must be a plan's name, or null for the default plan", details={"field": "plan"}
        )
    disabled = body.get("disabled")
    if "disabled" in body and not isinstance(disabled, bool):
        raise InvalidRequest("disabled must be true or false", details={"field": "disabled"})
    overrides = body.get("overrides", {})
    # null clears every override: each value back to the plan's.
    changes = CLEAR_ALL if overrides is None else read_changes(overrides, "overrides.")
    plans = _plans()
    plans.vendor(name)  # 404 before anything is recorded
    if "plan" in body:
        if plan is not None:
            plans.get(plan)
        _record("vendor.set", f"vendor:{name}", {"plan": plan})
    if "overrides" in body:
        _record("vendor.set", f"vendor:{name}", {"overrides": overrides})
    if "disabled" in body:
        _record("vendor.disable" if disabled else "vendor.enable", f"vendor:{name}")
    plans.set_vendor(
        name,
        **({"plan": plan} if "plan" in body else {}),
        disabled=disabled,
        overrides=changes if "overrides" in body else None,
    )
    _publish(plans)
    return jsonify(_vendor_view(plans, name))


def _vendor_view(plans: Plans, name: str) -> dict[str, Any]:
    """A vendor's plan, overrides and flag, and the values in force (as the database has them now)."""
    own = plans.vendor(name)
    effective = Effective.of(services().settings, plans.published(name).get(name))
    return {**own.to_dict(), "effective": effective.terms.to_dict()}
