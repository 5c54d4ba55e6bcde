"""The audit log: operator actions from the API and the CLI, listed newest first; vendors cannot read it."""

from __future__ import annotations

import pytest

from imgproc.adapters.audit import Actor, Audit
from imgproc.adapters.db import make_engine
from imgproc.errors import TransientError

AUDIT = "/api/image-queue/audit"


def test_entries_newest_first_with_their_details(engine):
    audit = Audit(engine)
    audit.record(Actor("ops", "10.0.0.9"), "plan.create", "plan:premium", {"weight": 2})
    audit.record(Actor.of_cli(), "queue.pause", "queue:bg-removal")
    newest, first = audit.entries()
    assert (newest["action"], newest["target"], newest["source"]) == (
        "queue.pause",
        "queue:bg-removal",
        "cli",
    )
    assert newest["who"].startswith("cli:") and newest["details"] == {}
    assert (first["who"], first["details"], first["source"]) == ("ops", {"weight": 2}, "10.0.0.9")
    assert first["at"].endswith("Z") and first["at"] <= newest["at"]
    assert [e["action"] for e in audit.entries(action="plan")] == ["plan.create"]
    assert [e["target"] for e in audit.entries(target="queue:bg-removal")] == ["queue:bg-removal"]
    assert len(audit.entries(limit=1)) == 1


def test_a_kind_filter_is_not_a_pattern(engine):
    audit = Audit(engine)
    audit.record(Actor("ops", ""), "plan_x.update", "plan:x")
    assert audit.entries(action="plan_") == []  # "_" is a LIKE wildcard: escaped


def test_an_unreachable_database_is_a_transient_error(settings):
    dead = make_engine(
        settings.replace(database_url="mysql+pymysql://root@127.0.0.1:1/none"), check_schema=False
    )
    with pytest.raises(TransientError) as caught:
        Audit(dead).record(Actor("ops", ""), "plan.create", "plan:x")
    assert caught.value.code == "database_failed"


def test_the_api_lists_it_to_operators_only_and_records_their_actions(client, vendor_key):
    ops, acme = vendor_key("ops", operator=True), vendor_key("acme")
    assert client.post("/api/image-queue/failed/retry?vendor=acme", headers=ops).status_code == 200
    answer = client.get(AUDIT, headers=ops)
    assert answer.status_code == 200
    [entry] = answer.json["entries"]
    assert (entry["who"], entry["action"], entry["details"]) == ("ops", "jobs.retry", {"vendor": "acme"})
    assert client.get(AUDIT, headers=acme).status_code == 403
    assert client.get(AUDIT + "?limit=x", headers=ops).status_code == 400


def test_the_cli_records_vendor_actions_and_lists_them(cli):
    code, out, _ = cli("vendors", "add", "globex")
    assert code == 0
    code, out, _ = cli("vendors", "rotate", "globex")
    assert code == 0
    code, out, _ = cli("audit")
    assert code == 0
    lines = out.splitlines()
    assert "key.rotate" in lines[1] and "vendor:globex" in lines[1]
    assert "vendor.add" in lines[2] and "cli:" in lines[2]
    code, out, _ = cli("audit", "--json", "--action", "vendor")
    assert code == 0 and '"vendor.add"' in out and "key.rotate" not in out
