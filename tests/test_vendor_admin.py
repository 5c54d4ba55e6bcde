"""The operator's vendor routes: add (the key shown once), rotate, list; audited; refused to vendors."""

from __future__ import annotations

VENDORS = "/api/image-queue/vendors"


def test_an_operator_adds_a_vendor_whose_key_works_and_rotates_it(client, vendor_key):
    ops = vendor_key("ops", operator=True)
    added = client.post(VENDORS, headers=ops, json={"name": "globex"})
    assert added.status_code == 201, added.json
    key = added.json["api_key"]
    globex = {"X-API-Key": key}
    assert client.get("/api/image-queue/limits", headers=globex).status_code == 200
    listed = client.get(VENDORS, headers=ops).json["vendors"]
    assert {"name": "globex", "operator": False, "plan": None, "disabled": False} in listed
    assert all("key" not in str(v) for v in listed)  # keys are never listed

    rotated = client.post(f"{VENDORS}/globex/rotate", headers=ops)
    assert rotated.status_code == 200 and rotated.json["api_key"] != key
    assert (
        client.get("/api/image-queue/limits", headers={"X-API-Key": rotated.json["api_key"]}).status_code
        == 200
    )

    audit = client.get("/api/image-queue/audit", headers=ops).json["entries"]
    assert [(e["action"], e["target"], e["who"]) for e in audit[:2]] == [
        ("key.rotate", "vendor:globex", "ops"),
        ("vendor.add", "vendor:globex", "ops"),
    ]


def test_bad_input_names_the_field_and_a_vendor_is_refused(client, vendor_key):
    ops, acme = vendor_key("ops", operator=True), vendor_key("acme")
    cases = [
        ({"name": ""}, "name"),
        ({"name": "bad name!"}, "name"),
        ({"name": "x", "operator": "yes"}, "operator"),
        ({"name": "x", "plan": "gold"}, "plan"),
    ]
    for body, field in cases:
        answer = client.post(VENDORS, headers=ops, json=body)
        assert answer.status_code == 400 and answer.json["error"]["details"]["field"] == field, (
            body,
            answer.json,
        )
    assert client.post(VENDORS, headers=ops, json={"name": "acme"}).status_code == 409
    assert client.post(f"{VENDORS}/nobody/rotate", headers=ops).status_code == 404
    for method, path in (("get", VENDORS), ("post", VENDORS), ("post", f"{VENDORS}/acme/rotate")):
        answer = getattr(client, method)(path, headers=acme, json={"name": "evil"})
        assert answer.status_code == 403 and answer.json["error"]["code"] == "forbidden"
