"""Vendor API keys, on SQLite and on the real MariaDB."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from imgproc.adapters.db import vendors
from imgproc.adapters.vendors import Vendor, Vendors, hash_key
from imgproc.errors import TransientError


def test_added_key_authenticates(engine):
    key = Vendors(engine).add("acme")
    assert key.startswith("ik_") and len(key) > 40
    assert Vendors(engine).authenticate(key) == Vendor("acme", operator=False)


def test_operator_flag(engine):
    key = Vendors(engine).add("ops", operator=True)
    assert Vendors(engine).authenticate(key) == Vendor("ops", operator=True)


def test_wrong_key_is_none(engine):
    key = Vendors(engine).add("acme")
    assert Vendors(engine).authenticate(key + "x") is None
    assert Vendors(engine).authenticate("") is None


def test_key_is_stored_only_as_its_hash(engine):
    key = Vendors(engine).add("acme")
    with engine.connect() as conn:
        row = conn.execute(sa.select(vendors)).one()
    assert key not in [str(value) for value in row]
    assert row.key_hash == hash_key(key) and len(row.key_hash) == 64


def test_duplicate_name_is_refused(engine):
    first = Vendors(engine).add("acme")
    with pytest.raises(ValueError, match="already exists"):
        Vendors(engine).add("acme", operator=True)
    assert Vendors(engine).authenticate(first) == Vendor("acme", operator=False)


@pytest.mark.parametrize("name", ["", "Acme", "-acme", "a b", "acme\n", "a" * 65, "é"])
def test_bad_name_is_refused(engine, name):
    with pytest.raises(ValueError, match="invalid vendor name"):
        Vendors(engine).add(name)
    assert Vendors(engine).list() == []


def test_rotate_invalidates_the_old_key(engine):
    old = Vendors(engine).add("acme")
    new = Vendors(engine).rotate("acme")
    assert new != old
    assert Vendors(engine).authenticate(old) is None
    assert Vendors(engine).authenticate(new) == Vendor("acme", operator=False)
    with pytest.raises(ValueError, match="no vendor"):
        Vendors(engine).rotate("nobody")


def test_list_and_remove(engine):
    key = Vendors(engine).add("zed")
    Vendors(engine).add("acme", operator=True)
    assert Vendors(engine).list() == [Vendor("acme", True), Vendor("zed", False)]
    assert Vendors(engine).remove("zed") is True
    assert Vendors(engine).remove("zed") is False
    assert Vendors(engine).authenticate(key) is None
    assert [v.name for v in Vendors(engine).list()] == ["acme"]


def test_down_database_is_transient():
    engine = sa.create_engine("mysql+pymysql://root:s3cret@127.0.0.1:1/x")
    with pytest.raises(TransientError) as info:
        Vendors(engine).authenticate("ik_whatever")
    assert info.value.code == "database_failed" and "s3cret" not in info.value.message


def test_cached_authentication_forgets_a_removed_key_after_its_ttl(engine):
    import time

    from imgproc.adapters.vendors import CachedVendors

    plain = Vendors(engine)
    key = plain.add("acme")
    cached = CachedVendors(plain, ttl=0.3)
    assert cached.authenticate(key) == Vendor("acme", operator=False)
    plain.remove("acme")
    assert cached.authenticate(key) is not None  # still fresh in this process
    time.sleep(0.35)
    assert cached.authenticate(key) is None
