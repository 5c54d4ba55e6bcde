"""Plans (API.md "Operator controls"): the store, the operator's routes, each vendor's limits, disabling."""

from __future__ import annotations

import json

import pytest

from imgproc.adapters.audit import Audit
from imgproc.adapters.plans import Plans, read_changes
from imgproc.adapters.vendors import Vendors
from imgproc.config import Settings
from imgproc.errors import Conflict, InvalidRequest, NotFound
from imgproc.queueing.keys import KEY_PLAN_CAP, KEY_PLAN_VENDORS, KEY_PLAN_VERSION, KEY_PLAN_WEIGHT

PLANS = "/api/image-queue/plans"
LIGHT = "/api/image-queue/process-image-queue"
BULK_LIGHT = "/api/image-queue/bulk-process-image"
LIMITS = "/api/image-queue/limits"
URL = "https://example.com/a.jpg"
PREMIUM = {
    "name": "premium",
    "limits": {"all": "1000 per 15 minutes", "image": "500 per 15 minutes", "bg_removal": "300 per hour"},
    "weight": 2,
    "max_running": 8,
    "max_items": 3,
}


def vendor(name: str) -> str:
    return f"/api/image-queue/vendors/{name}"


def items(n: int) -> dict:
    return {"items": [{"record_id": f"r{i}", "image_url": URL} for i in range(n)]}


def test_the_store_keeps_what_a_plan_sets_and_the_default_fills_the_rest(engine):
    Vendors(engine).add("acme")
    plans = Plans(engine)
    plans.create("premium", read_changes({"weight": 2, "limits": {"all": "1000 per 15 minutes"}}))
    plan = plans.update("premium", read_changes({"max_items": 800, "weight": None}))
    assert plan.to_dict()["limits"] == {"all": "1000 per 15 minutes"}
    assert (plan.terms.weight, plan.terms.max_items, plan.terms.max_running) == (None, 800, None)
    with pytest.raises(Conflict):
        plans.create("premium", {})
    with pytest.raises(NotFound):
        plans.update("gold", {})

    plans.set_vendor("acme", plan="premium", overrides=read_changes({"max_running": 5}))
    assert plans.published() == {
        "acme": {
            "plan": "premium",
            "limits": {"all": "1000 per 15 minutes"},
            "max_items": 800,
            "max_running": 5,
        }
    }
    assert [(p.name, p.vendors) for p in plans.list()] == [("premium", 1)]
    with pytest.raises(Conflict, match="in use by acme"):
        plans.delete("premium")
    with pytest.raises(NotFound, match="no plan 'gold'"):
        plans.set_vendor("acme", plan="gold")
    plans.set_vendor("acme", plan=None, disabled=True)
    assert plans.published() == {"acme": {"max_running": 5, "disabled": True}}
    assert Vendors(engine).list()[0].disabled
    plans.delete("premium")
    assert plans.list() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limits": {"all": "lots"}}, "limits.all"),
        ({"limits": {"image": "10 per fortnight"}}, "limits.image"),
        ({"limits": {"bulk": "10 per hour; 20 per day"}}, "limits.bulk"),
        ({"limits": {"bg_removal": "0 per hour"}}, "limits.bg_removal"),
        ({"limits": {"all": "10 per 0 hours"}}, "limits.all"),
        ({"limits": {"everything": "1 per hour"}}, "limits.everything"),
        ({"limits": "1 per hour"}, "limits"),
        ({"weight": 0}, "weight"),
        ({"weight": 101}, "weight"),
        ({"weight": "2"}, "weight"),
        ({"weight": True}, "weight"),
        ({"max_running": 1001}, "max_running"),
        ({"max_items": 0}, "max_items"),
        ({"max_items": 10_001}, "max_items"),
        ({"colour": "gold"}, "colour"),
    ],
)
def test_each_bad_field_is_named(body, field):
    with pytest.raises(InvalidRequest) as caught:
        read_changes(body)
    assert caught.value.details["field"] == field


def test_operators_manage_plans_and_each_action_is_audited(client, vendor_key, app):
    ops, acme = vendor_key("ops", operator=True), vendor_key("acme")
    created = client.post(PLANS, json=PREMIUM, headers=ops)
    assert created.status_code == 201, created.json
    assert created.json["weight"] == 2 and created.json["limits"]["all"] == "1000 per 15 minutes"
    assert created.json["limits"].get("bulk") is None  # left out: the default plan's
    assert client.post(PLANS, json=PREMIUM, headers=ops).status_code == 409

    changed = client.put(f"{PLANS}/premium", json={"weight": 3, "limits": {"all": None}}, headers=ops)
    assert changed.status_code == 200
    assert changed.json["weight"] == 3 and "all" not in changed.json["limits"]
    assert changed.json["max_running"] == 8  # not given: kept

    listed = client.get(PLANS, headers=ops).json
    assert [p["name"] for p in listed["plans"]] == ["premium"]
    assert listed["default"]["limits"]["all"] == app.extensions["imgproc"].settings.limit_global
    assert listed["default"]["weight"] == 1

    assert client.put(vendor("acme"), json={"plan": "premium"}, headers=ops).status_code == 200
    assert client.delete(f"{PLANS}/premium", headers=ops).status_code == 409
    assert client.put(vendor("acme"), json={"plan": None}, headers=ops).json["plan"] is None
    assert client.delete(f"{PLANS}/premium", headers=ops).status_code == 200
    assert client.put(f"{PLANS}/premium", json={"weight": 2}, headers=ops).status_code == 404
    assert client.put(vendor("acme"), json={"plan": "premium"}, headers=ops).status_code == 404
    assert client.put(vendor("nobody"), json={"disabled": True}, headers=ops).status_code == 404

    actions = [(e["action"], e["target"]) for e in Audit(app.extensions["imgproc"].engine).entries()]
    assert actions[::-1] == [
        ("plan.create", "plan:premium"),
        ("plan.update", "plan:premium"),
        ("vendor.set", "vendor:acme"),
        ("vendor.set", "vendor:acme"),
        ("plan.delete", "plan:premium"),
    ]
    # A vendor can do none of it.
    for method, path in [
        ("get", PLANS),
        ("post", PLANS),
        ("put", f"{PLANS}/premium"),
        ("delete", f"{PLANS}/premium"),
        ("get", vendor("acme")),
        ("put", vendor("acme")),
    ]:
        answer = getattr(client, method)(path, json={"plan": None}, headers=acme)
        assert (answer.status_code, answer.json["error"]["code"]) == (403, "forbidden"), (method, path)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (PLANS, {**PREMIUM, "weight": 0}, "weight"),
        (PLANS, {**PREMIUM, "limits": {"all": "many per hour"}}, "limits.all"),
        (PLANS, {"weight": 2}, "name"),
        (PLANS, {"name": "Bad Name!"}, "name"),
        (f"{PLANS}/premium", {"max_items": 20_000}, "max_items"),
        (f"{PLANS}/premium", {"name": "other"}, "name"),
        (vendor("acme"), {"overrides": {"max_running": 0}}, "overrides.max_running"),
        (vendor("acme"), {"overrides": {"limits": {"all": "x"}}}, "overrides.limits.all"),
        (vendor("acme"), {"disabled": "yes"}, "disabled"),
        (vendor("acme"), {"plan": 3}, "plan"),
        (vendor("acme"), {"colour": "gold"}, "colour"),
    ],
)
def test_bad_input_is_400_naming_the_field(client, vendor_key, path, body, field):
    ops = vendor_key("ops", operator=True)
    vendor_key("acme")
    client.post(PLANS, json={"name": "premium"}, headers=ops)
    method = client.post if path == PLANS else client.put
    answer = method(path, json=body, headers=ops)
    assert answer.status_code == 400, answer.json
    assert answer.json["error"]["code"] == "invalid_request"
    assert answer.json["error"]["details"]["field"] == field


def test_a_vendor_on_a_plan_has_its_limits_headers_and_largest_bulk(client, vendor_key, redis_conn):
    ops, acme, globex = vendor_key("ops", operator=True), vendor_key("acme"), vendor_key("globex")
    client.post(PLANS, json={**PREMIUM, "limits": {"image": "2 per minute"}}, headers=ops)
    answer = client.put(vendor("acme"), json={"plan": "premium"}, headers=ops)
    assert answer.json["effective"]["limits"]["image"] == "2 per minute"

    shown = client.get(LIMITS, headers=acme).json["limits"]
    assert shown["image"]["limit"] == "2 per 1 minute" and shown["image"]["remaining"] == 2
    assert client.get(LIMITS, headers=globex).json["limits"]["image"]["amount"] == 100000  # the default's
    codes = []
    for i in range(3):
        answer = client.post(LIGHT, json={"record_id": f"r{i}", "image_url": URL}, headers=acme)
        codes.append(answer.status_code)
        if answer.status_code == 202:
            assert answer.headers["X-RateLimit-Limit"] == "2"
    assert codes == [202, 202, 429]
    assert client.post(LIGHT, json={"record_id": "r", "image_url": URL}, headers=globex).status_code == 202

    # max_items 3: a bulk of 4 is 413 for acme, not for a vendor on the default plan (500).
    client.put(vendor("acme"), json={"overrides": {"limits": {"image": "100 per minute"}}}, headers=ops)
    over = client.post(BULK_LIGHT, json=items(4), headers=acme)
    assert (over.status_code, over.json["error"]["code"]) == (413, "too_many_items")
    assert over.json["error"]["details"]["max_items"] == 3
    assert client.post(BULK_LIGHT, json=items(3), headers=acme).status_code == 202
    assert client.post(BULK_LIGHT, json=items(4), headers=globex).status_code == 202
    # An override over the plan's.
    client.put(vendor("acme"), json={"overrides": {"max_items": 4}}, headers=ops)
    assert client.post(BULK_LIGHT, json=items(4), headers=acme).status_code == 202


def test_weight_and_cap_are_published_for_the_fair_share(client, vendor_key, redis_conn):
    ops = vendor_key("ops", operator=True)
    for name in ("acme", "globex", "initech"):
        vendor_key(name)
    client.post(PLANS, json={"name": "premium", "weight": 2, "max_running": 8}, headers=ops)
    client.post(PLANS, json={"name": "small", "max_items": 10}, headers=ops)
    client.put(vendor("acme"), json={"plan": "premium"}, headers=ops)
    client.put(vendor("globex"), json={"plan": "premium", "overrides": {"weight": 5}}, headers=ops)
    client.put(vendor("initech"), json={"plan": "small"}, headers=ops)
    assert redis_conn.hgetall(KEY_PLAN_WEIGHT) == {b"acme": b"2", b"globex": b"5"}
    assert redis_conn.hgetall(KEY_PLAN_CAP) == {b"acme": b"8", b"globex": b"8"}  # initech: the default
    version = int(redis_conn.get(KEY_PLAN_VERSION))

    client.put(f"{PLANS}/premium", json={"max_running": 3}, headers=ops)
    client.put(vendor("globex"), json={"overrides": None}, headers=ops)
    assert redis_conn.hgetall(KEY_PLAN_WEIGHT) == {b"acme": b"2", b"globex": b"2"}
    assert redis_conn.hgetall(KEY_PLAN_CAP) == {b"acme": b"3", b"globex": b"3"}
    assert int(redis_conn.get(KEY_PLAN_VERSION)) == version + 2
    assert json.loads(redis_conn.hget(KEY_PLAN_VENDORS, "initech")) == {"plan": "small", "max_items": 10}


def test_a_disabled_vendor_is_refused_keeps_its_jobs_and_comes_back(client, vendor_key):
    ops, acme = vendor_key("ops", operator=True), vendor_key("acme")
    job = client.post(LIGHT, json={"record_id": "r1", "image_url": URL}, headers=acme).json["job_id"]
    answer = client.put(vendor("acme"), json={"disabled": True}, headers=ops)
    assert answer.status_code == 200 and answer.json["disabled"] is True
    for method, path in [("get", f"/api/image-queue/job/{job}"), ("post", LIGHT), ("get", LIMITS)]:
        refused = getattr(client, method)(path, json={"record_id": "r2", "image_url": URL}, headers=acme)
        assert (refused.status_code, refused.json["error"]["code"]) == (403, "vendor_disabled")
    # Its job is kept: an operator still sees it queued.
    assert client.get(f"/api/image-queue/job/{job}", headers=ops).json["state"] == "queued"
    client.put(vendor("acme"), json={"disabled": False}, headers=ops)
    assert client.get(f"/api/image-queue/job/{job}", headers=acme).status_code == 200
    actions = [e["action"] for e in client.get("/api/image-queue/audit", headers=ops).json["entries"]]
    assert actions[:2] == ["vendor.enable", "vendor.disable"]


def test_plans_come_back_after_redis_loses_them(client, vendor_key, redis_conn):
    ops, acme = vendor_key("ops", operator=True), vendor_key("acme")
    client.post(PLANS, json={"name": "tiny", "limits": {"image": "1 per minute"}}, headers=ops)
    client.put(vendor("acme"), json={"plan": "tiny"}, headers=ops)
    redis_conn.flushdb()  # a Redis restarted empty: the database still has the plans
    limits = client.get(LIMITS, headers=acme).json["limits"]
    assert limits["image"]["amount"] == 1
    assert redis_conn.hget(KEY_PLAN_VENDORS, "acme") is not None


def test_the_cli_manages_plans_and_vendors(cli, redis_conn):
    assert cli("vendors", "add", "acme")[0] == 0
    code, out, err = cli("plans", "add", "premium", "--all", "1000 per 15 minutes", "--weight", "2")
    assert code == 0, err
    code, _, err = cli("plans", "set", "premium", "--max-running", "8", "--weight", "default")
    assert code == 0, err
    code, out, _ = cli("plans", "list")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["premium"][1:4] == ["1000", "per", "15"] and "8" in rows["premium"]
    assert Settings.from_env().limit_global.split()[0] == rows["(default)"][1]  # the environment's

    code, out, err = cli("vendors", "set", "acme", "--plan", "premium", "--override", "weight=4")
    assert code == 0, err
    assert redis_conn.hget(KEY_PLAN_WEIGHT, "acme") == b"4" and redis_conn.hget(KEY_PLAN_CAP, "acme") == b"8"
    assert cli("vendors", "set", "acme", "--disable")[0] == 0
    assert cli("vendors", "list")[1].strip() == "acme  (plan premium)  (disabled)"
    assert cli("plans", "remove", "premium")[0] == 1  # in use
    assert cli("vendors", "set", "acme", "--no-plan", "--enable", "--no-overrides")[0] == 0
    assert redis_conn.hgetall(KEY_PLAN_WEIGHT) == {}
    assert cli("plans", "remove", "premium")[0] == 0
    code, _, err = cli("plans", "add", "bad", "--weight", "0")
    assert code == 1 and "weight must be a whole number from 1 to 100" in err
    assert cli("vendors", "set", "nobody", "--disable")[0] == 1

    code, out, _ = cli("audit", "--json")
    actions = [json.loads(line)["action"] for line in out.splitlines()][::-1]
    assert actions == [
        "vendor.add",
        "plan.create",
        "plan.update",
        "vendor.set",
        "vendor.set",
        "vendor.disable",
        "vendor.set",
        "vendor.set",
        "vendor.enable",
        "plan.delete",
    ]


@pytest.fixture(params=["sqlite", "mariadb"])
def empty_url(request, tmp_path):
    if request.param == "mariadb":
        return request.getfixturevalue("empty_mariadb_url")
    return f"sqlite:///{tmp_path / 'at-0002.db'}"


def test_the_upgrade_from_0002_keeps_every_vendor_on_the_default_plan(empty_url):
    from imgproc.adapters import schema
    from imgproc.adapters.db import make_engine

    engine = make_engine(Settings(database_url=empty_url), check_schema=False)
    assert schema.upgrade(engine, "0002") == (None, "0002")
    with engine.begin() as conn:  # the vendors table as 0002 has it: no plan, overrides or flag
        for name, digest, operator in (("acme", "ab" * 32, 0), ("ops", "cd" * 32, 1)):
            conn.exec_driver_sql(
                "INSERT INTO vendors (name, key_hash, is_operator, created_at) "
                f"VALUES ('{name}', '{digest}', {operator}, '2026-12-01 10:00:00')"
            )
    assert schema.upgrade(engine) == ("0002", schema.head())
    assert schema.drift(engine) is None  # the tables are db.py's
    vendors = Vendors(engine)
    assert [(v.name, v.operator, v.plan, v.disabled) for v in vendors.list()] == [
        ("acme", False, None, False),
        ("ops", True, None, False),
    ]
    assert vendors.authenticate_hash("ab" * 32).name == "acme"
    assert Plans(engine).published() == {}  # nobody's values differ from the environment's
    engine.dispose()


def test_a_change_is_refused_whole_when_redis_is_down(app, client, vendor_key):
    """503 before the audit log or the database: a change that could not be published is not made."""
    ops = vendor_key("ops", operator=True)
    vendor_key("acme")
    pool = app.extensions["imgproc"].conn.connection_pool
    port = pool.connection_kwargs["port"]

    @app.before_request
    def redis_goes_down() -> None:  # after the key check and the limits' hook: registered after them
        pool.connection_kwargs["port"] = 1
        pool.reset()

    try:
        answers = [
            client.post(PLANS, json={"name": "premium", "weight": 2}, headers=ops),
            client.put(vendor("acme"), json={"disabled": True}, headers=ops),
        ]
    finally:
        pool.connection_kwargs["port"] = port
        pool.reset()
    assert [(a.status_code, a.json["error"]["code"]) for a in answers] == [(503, "unavailable")] * 2
    engine = app.extensions["imgproc"].engine
    assert Plans(engine).list() == [] and not Plans(engine).vendor("acme").disabled
    assert Audit(engine).entries() == []
