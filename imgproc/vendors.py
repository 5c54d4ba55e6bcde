"""Vendors and their API keys, stored only as SHA-256 hashes."""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from .db import database_errors, vendors

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
KEY_PREFIX = "ik_"


@dataclass(frozen=True)
class Vendor:
    """A vendor that authenticated with its API key; operators may see every vendor's jobs."""

    name: str
    operator: bool


def hash_key(key: str) -> str:
    """Return the SHA-256 hex digest under which ``key`` is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid vendor name {name!r}: use 1-64 of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )


class Vendors:
    """The vendors table: add, authenticate, list, remove and rotate API keys."""

    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def add(self, name: str, operator: bool = False) -> str:
        """Create vendor ``name`` and return its new API key, which is not stored in clear."""
        _check_name(name)
        key = _new_key()
        row = {"name": name, "key_hash": hash_key(key), "is_operator": operator}
        with database_errors(self._engine, "add vendor"):
            try:
                with self._engine.begin() as conn:
                    conn.execute(vendors.insert().values(row))
            except sa.exc.IntegrityError as exc:
                raise ValueError(f"vendor {name!r} already exists") from exc
        return key

    def authenticate(self, key: str) -> Vendor | None:
        """Return the vendor that owns ``key``, or None for an unknown key."""
        if not key:
            return None
        query = sa.select(vendors.c.name, vendors.c.is_operator).where(
            vendors.c.key_hash == hash_key(key)
        )
        with database_errors(self._engine, "authenticate"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else Vendor(row.name, bool(row.is_operator))

    def list(self) -> builtins.list[Vendor]:
        """Return every vendor, by name."""
        query = sa.select(vendors.c.name, vendors.c.is_operator).order_by(vendors.c.name)
        with database_errors(self._engine, "list vendors"), self._engine.connect() as conn:
            return [Vendor(row.name, bool(row.is_operator)) for row in conn.execute(query)]

    def remove(self, name: str) -> bool:
        """Delete vendor ``name``; return whether it existed."""
        query = vendors.delete().where(vendors.c.name == name)
        with database_errors(self._engine, "remove vendor"), self._engine.begin() as conn:
            return conn.execute(query).rowcount > 0

    def rotate(self, name: str) -> str:
        """Give vendor ``name`` a new API key and return it; the old key stops working."""
        key = _new_key()
        query = vendors.update().where(vendors.c.name == name).values(key_hash=hash_key(key))
        with database_errors(self._engine, "rotate key"), self._engine.begin() as conn:
            if conn.execute(query).rowcount == 0:
                raise ValueError(f"no vendor named {name!r}")
        return key
