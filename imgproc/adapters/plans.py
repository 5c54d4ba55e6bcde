"""Plans (API.md "Operator controls"): named limits, weight, cap and largest bulk; each vendor's own.

    plans = Plans(engine)
    plans.create("premium", read_changes({"weight": 2, "limits": {"all": "1000 per 15 minutes"}}))
    plans.set_vendor("acme", plan="premium", overrides=read_changes({"max_items": 800}))
    plans.published()          # {vendor: what its plan and overrides set}, for imgproc.queueing.planfeed

The default plan is the environment's (``Settings.limit_*``, ``vendor_concurrency``,
``max_bulk_items``, weight 1) and is never stored: a plan sets some values and
leaves the others NULL, which the default's fill (``Effective.of``); a
vendor's overrides go over its plan's the same way. A vendor without a plan is
on the default plan, so an upgrade changes nothing until an operator acts.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from limits import parse_many

from imgproc.config import Settings
from imgproc.errors import Conflict, InvalidRequest, NotFound

from .db import database_errors, plans, utcnow, vendors
from .vendors import IS_RETIRED, NAME_PATTERN

#: A plan's four request limits, by their name in the API, and the setting that is the default's.
LIMITS = {
    "all": "limit_global",
    "image": "limit_image",
    "bg_removal": "limit_bg_removal",
    "bulk": "limit_bulk",
}
#: A plan's numbers and their bounds.
NUMBERS = {"weight": (1, 100), "max_running": (1, 1000), "max_items": (1, 10_000)}
#: ``read_changes`` of every field cleared: the values below show through.
CLEAR_ALL: dict[str, Any] = {**{f"limits.{name}": None for name in LIMITS}, **dict.fromkeys(NUMBERS)}
#: Most units and longest window of a limit: each unit used is a member of a Redis sorted set.
MOST_UNITS, LONGEST_WINDOW = 10_000_000, 366 * 86400
_ZERO_PERIOD = re.compile(r"(per|/)\s*0+\s*[a-z]", re.IGNORECASE)


def check_limit(text: Any, field_name: str) -> str:
    """``text`` as one "N per period" of the ``limits`` library (what ``api.ratelimits`` counts), or 400."""
    try:
        items = parse_many(text) if isinstance(text, str) and not _ZERO_PERIOD.search(text) else []
    except ValueError:
        items = []
    if len(items) != 1 or not 1 <= items[0].amount <= MOST_UNITS or items[0].get_expiry() > LONGEST_WINDOW:
        raise InvalidRequest(
            f'{field_name} must be one "N per period", such as "100 per 15 minutes" (N from 1 to '
            f"{MOST_UNITS:,}, a period of a year at most), not {text!r}",
            details={"field": field_name},
        )
    return text.strip()


def _check_number(value: Any, field_name: str) -> int:
    low, high = NUMBERS[field_name.rpartition(".")[2]]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(
            f"{field_name} must be a whole number from {low} to {high}, not {value!r}",
            details={"field": field_name},
        )
    return value


def read_changes(body: Any, where: str = "") -> dict[str, Any]:
    """A plan's fields (or overrides) as sent, checked: ``{"limits.all": "...", "weight": None}``.

    A value given as null is cleared (back to what is below it); ``"limits": null`` clears all four.
    ``where`` prefixes the field a 400 names (``overrides.``).
    """
    if not isinstance(body, dict):
        named = where.rstrip(".") or "body"
        raise InvalidRequest(f"{named} must be a JSON object", details={"field": named})
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name == "limits":
            if value is None:
                changes.update(dict.fromkeys((f"limits.{k}" for k in LIMITS), None))
                continue
            if not isinstance(value, dict):
                raise InvalidRequest(
                    f"{where}limits must be a JSON object", details={"field": f"{where}limits"}
                )
            for scope, text in value.items():
                named = f"{where}limits.{scope}"
                if scope not in LIMITS:
                    raise InvalidRequest(
                        f"unknown limit {named!r} (known: {', '.join(LIMITS)})", details={"field": named}
                    )
                changes[f"limits.{scope}"] = None if text is None else check_limit(text, named)
        elif name in NUMBERS:
            changes[name] = None if value is None else _check_number(value, f"{where}{name}")
        else:
            raise InvalidRequest(f"unknown field {where}{name!r}", details={"field": f"{where}{name}"})
    return changes


@dataclass(frozen=True)
class Terms:
    """What a plan or a vendor's overrides set; a value not set (None, absent) is taken from below."""

    limits: Mapping[str, str] = field(default_factory=dict)
    weight: int | None = None
    max_running: int | None = None
    max_items: int | None = None

    def changed(self, changes: Mapping[str, Any]) -> Terms:
        """These terms with ``read_changes``'s values applied (None clears one)."""
        limits = dict(self.limits)
        numbers = {name: getattr(self, name) for name in NUMBERS}
        for name, value in changes.items():
            if name.startswith("limits.") and value is None:
                limits.pop(name.removeprefix("limits."), None)
            elif name.startswith("limits."):
                limits[name.removeprefix("limits.")] = value
            else:
                numbers[name] = value
        return Terms(limits, **numbers)

    def over(self, below: Terms) -> Terms:
        """These terms with ``below``'s where these set nothing."""
        numbers = {
            n: getattr(self, n) if getattr(self, n) is not None else getattr(below, n) for n in NUMBERS
        }
        return Terms({**below.limits, **self.limits}, **numbers)

    def to_dict(self) -> dict[str, Any]:
        """The API's shape: ``limits`` and each number, null where not set."""
        return {"limits": dict(self.limits), **{name: getattr(self, name) for name in NUMBERS}}

    def set_values(self) -> dict[str, Any]:
        """Only what is set (what Redis carries)."""
        found: dict[str, Any] = {"limits": dict(self.limits)} if self.limits else {}
        found.update({n: getattr(self, n) for n in NUMBERS if getattr(self, n) is not None})
        return found

    @classmethod
    def of_json(cls, raw: str | None) -> Terms:
        """Terms stored as JSON (a vendor's overrides); none stored: nothing set."""
        data = json.loads(raw) if raw else {}
        return cls(dict(data.get("limits") or {}), **{n: data.get(n) for n in NUMBERS})


def default_terms(settings: Settings) -> Terms:
    """The default plan: the environment's limits, ``vendor_concurrency``, ``max_bulk_items``, weight 1."""
    return Terms(
        {name: getattr(settings, setting) for name, setting in LIMITS.items()},
        weight=1,
        max_running=settings.vendor_concurrency,
        max_items=settings.max_bulk_items,
    )


@dataclass(frozen=True)
class Effective:
    """A vendor's values in force: its overrides over its plan's over the default plan's."""

    plan: str | None
    terms: Terms
    disabled: bool = False

    @classmethod
    def of(cls, settings: Settings, published: Mapping[str, Any] | None) -> Effective:
        """From what ``Plans.published`` wrote for the vendor (None: nothing, the default plan)."""
        published = published or {}
        own = Terms(dict(published.get("limits") or {}), **{n: published.get(n) for n in NUMBERS})
        return cls(published.get("plan"), own.over(default_terms(settings)), bool(published.get("disabled")))


@dataclass(frozen=True)
class Plan:
    """A stored plan; ``vendors``: how many vendors are on it."""

    name: str
    terms: Terms
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    vendors: int = 0

    def to_dict(self) -> dict[str, Any]:
        times = {"created_at": self.created_at, "updated_at": self.updated_at}
        when = {k: v.isoformat().replace("+00:00", "Z") for k, v in times.items() if v}
        return {"name": self.name, **self.terms.to_dict(), "vendors": self.vendors, **when}


@dataclass(frozen=True)
class VendorTerms:
    """A vendor's plan (None: the default), its own overrides and whether it is disabled."""

    name: str
    plan: str | None
    overrides: Terms
    disabled: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plan": self.plan,
            "disabled": self.disabled,
            "overrides": self.overrides.set_values(),
        }


#: ``set_vendor``'s plan when not given (None is a value: the default plan).
_UNSET: Any = object()
_VENDOR_COLUMNS = (vendors.c.name, vendors.c.plan, vendors.c.overrides, vendors.c.disabled)


def _terms_of(row) -> Terms:
    return Terms(
        {name: row[f"limit_{name}"] for name in LIMITS if row[f"limit_{name}"] is not None},
        **{name: row[name] for name in NUMBERS},
    )


def _row_of(terms: Terms) -> dict[str, Any]:
    return {f"limit_{name}": terms.limits.get(name) for name in LIMITS} | {
        name: getattr(terms, name) for name in NUMBERS
    }


def _vendor_terms(conn: sa.Connection, name: str) -> VendorTerms:
    query = sa.select(*_VENDOR_COLUMNS).where(vendors.c.name == name, ~IS_RETIRED)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no vendor {name!r}")
    return VendorTerms(row.name, row.plan, Terms.of_json(row.overrides), bool(row.disabled))


def _refuse_in_use(conn: sa.Connection, name: str) -> None:
    query = sa.select(vendors.c.name).where(vendors.c.plan == name, ~IS_RETIRED).order_by(vendors.c.name)
    users = conn.execute(query).scalars().all()
    if users:
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise Conflict(
            f"plan {name!r} is in use by {shown}: move them to another plan first",
            details={"vendors": len(users)},
        )


def _check_name(name: Any, what: str = "plan") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            f"{what} name must be 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit",
            details={"field": "name"},
        )
    return name


class Plans:
    """The plans table and each vendor's plan, overrides and disabled flag."""

    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def list(self) -> builtins.list[Plan]:
        """Every plan by name, with how many vendors are on it."""
        users = (
            sa.select(vendors.c.plan, sa.func.count().label("n"))
            .where(~IS_RETIRED, vendors.c.plan.is_not(None))
            .group_by(vendors.c.plan)
        )
        with database_errors(self._engine, "list plans"), self._engine.connect() as conn:
            counts = {row.plan: row.n for row in conn.execute(users)}
            rows = conn.execute(sa.select(plans).order_by(plans.c.name)).mappings().all()
        return [self._plan(row, counts.get(row["name"], 0)) for row in rows]

    def get(self, name: str) -> Plan:
        """Plan ``name``; NotFound when there is none."""
        found = [plan for plan in self.list() if plan.name == name]
        if not found:
            raise NotFound(f"no plan {name!r}")
        return found[0]

    def require_new(self, name: str) -> None:
        """What ``create`` would refuse, asked first: 400 for a bad name, Conflict when it exists."""
        _check_name(name)
        if any(plan.name == name for plan in self.list()):
            raise Conflict(f"plan {name!r} already exists")

    def require_unused(self, name: str) -> None:
        """What ``delete`` would refuse, asked first: NotFound, or Conflict while a vendor is on it."""
        if self.get(name).vendors:
            with database_errors(self._engine, "read plan"), self._engine.connect() as conn:
                _refuse_in_use(conn, name)

    def create(self, name: str, changes: Mapping[str, Any]) -> Plan:
        """A new plan; Conflict when the name is taken."""
        _check_name(name)
        now = utcnow()
        row = {"name": name, **_row_of(Terms().changed(changes)), "created_at": now, "updated_at": now}
        with database_errors(self._engine, "create plan"):
            try:
                with self._engine.begin() as conn:
                    conn.execute(plans.insert().values(row))
            except sa.exc.IntegrityError:
                raise Conflict(f"plan {name!r} already exists") from None
        return self.get(name)

    def update(self, name: str, changes: Mapping[str, Any]) -> Plan:
        """Set (or clear, None) the values ``changes`` names; the others stay; NotFound."""
        with database_errors(self._engine, "update plan"), self._engine.begin() as conn:
            row = conn.execute(sa.select(plans).where(plans.c.name == name)).mappings().first()
            if row is None:
                raise NotFound(f"no plan {name!r}")
            terms = _terms_of(row).changed(changes)
            conn.execute(
                plans.update().where(plans.c.name == name).values(**_row_of(terms), updated_at=utcnow())
            )
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete plan ``name``; Conflict while a vendor is on it, NotFound when there is none."""
        with database_errors(self._engine, "delete plan"), self._engine.begin() as conn:
            _refuse_in_use(conn, name)
            conn.execute(vendors.update().where(vendors.c.plan == name).values(plan=None))  # removed vendors'
            if conn.execute(plans.delete().where(plans.c.name == name)).rowcount == 0:
                raise NotFound(f"no plan {name!r}")

    def vendor(self, name: str) -> VendorTerms:
        """Vendor ``name``'s plan, overrides and flag; NotFound for no such vendor (or a removed one)."""
        with database_errors(self._engine, "read vendor"), self._engine.connect() as conn:
            return _vendor_terms(conn, name)

    def set_vendor(
        self,
        name: str,
        *,
        plan: str | None = _UNSET,
        disabled: bool | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> VendorTerms:
        """Give vendor ``name`` a plan (None: the default), disable or enable it, change its overrides.

        ``overrides``: ``read_changes``'s values over the vendor's own. NotFound for an unknown vendor
        or plan; one transaction, so a plan deleted meanwhile is never assigned.
        """
        values: dict[str, Any] = {}
        with database_errors(self._engine, "set vendor"), self._engine.begin() as conn:
            current = _vendor_terms(conn, name)
            if plan is not _UNSET:
                if (
                    plan is not None
                    and not conn.execute(sa.select(plans.c.id).where(plans.c.name == plan)).first()
                ):
                    raise NotFound(f"no plan {plan!r}")
                values["plan"] = plan
            if disabled is not None:
                values["disabled"] = disabled
            if overrides is not None:
                own = current.overrides.changed(overrides).set_values()
                values["overrides"] = json.dumps(own, sort_keys=True) if own else None
            if values:
                conn.execute(vendors.update().where(vendors.c.name == name, ~IS_RETIRED).values(**values))
            return _vendor_terms(conn, name)

    def published(self, vendor: str | None = None) -> dict[str, dict[str, Any]]:
        """Each vendor (or only ``vendor``) whose plan, overrides or flag are not the default: what they set.

        ``{"plan": "premium", "limits": {...}, "weight": 2, "disabled": true}``, only what is set;
        ``Effective.of`` fills the rest from the environment of the process that reads it.
        """
        query = sa.select(*_VENDOR_COLUMNS).where(
            ~IS_RETIRED,
            sa.or_(vendors.c.plan.is_not(None), vendors.c.overrides.is_not(None), vendors.c.disabled),
        )
        if vendor is not None:
            query = query.where(vendors.c.name == vendor)
        with database_errors(self._engine, "read plans"), self._engine.connect() as conn:
            named = {row["name"]: _terms_of(row) for row in conn.execute(sa.select(plans)).mappings()}
            rows = conn.execute(query).all()
        found = {}
        for row in rows:
            terms = Terms.of_json(row.overrides).over(named.get(row.plan, Terms()))
            entry = {"plan": row.plan, **terms.set_values()} if row.plan in named else terms.set_values()
            if row.disabled:
                entry["disabled"] = True
            found[row.name] = entry
        return found

    @staticmethod
    def _plan(row, vendors_on: int) -> Plan:
        return Plan(row["name"], _terms_of(row), row["created_at"], row["updated_at"], vendors_on)
