"""Vendors and their API keys, stored only as SHA-256 hashes."""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from .db import database_errors, records, vendors, webhook_attempts, webhook_messages, webhook_secrets

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
KEY_PREFIX = "ik_"
#: A removed vendor keeps its row, its key hash replaced by this mark (never a sha256 hex digest):
#: its name stays taken until ``imgproc vendors purge`` deletes what is kept under it.
RETIRED = "removed:"
IS_RETIRED = vendors.c.key_hash.startswith(RETIRED)


@dataclass(frozen=True)
class Vendor:
    """A vendor that authenticated with its API key; operators may see every vendor's jobs.

    ``plan``: its plan's name (None: the default plan); a ``disabled`` vendor's requests are refused
    (403 ``vendor_disabled``, ``imgproc.api.ratelimits``), its jobs kept (``imgproc.adapters.plans``).
    """

    name: str
    operator: bool
    plan: str | None = None
    disabled: bool = False


class VendorDirectory(Protocol):
    """Who an API key belongs to: what the API asks of every request."""

    def authenticate(self, key: str) -> Vendor | None:
        """The key's vendor, or None for an unknown key."""
        ...

    def authenticate_hash(self, digest: str) -> Vendor | None:
        """The vendor of the key whose SHA-256 hex digest this is, or None."""
        ...


_COLUMNS = (vendors.c.name, vendors.c.is_operator, vendors.c.plan, vendors.c.disabled)


def _vendor(row) -> Vendor:
    return Vendor(row.name, bool(row.is_operator), row.plan, bool(row.disabled))


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
        """Create vendor ``name`` and return its new API key, which is not stored in clear.

        A removed vendor's name is refused until its data is purged: jobs, results, records and
        webhook secret are all found by name, and a new vendor of that name would see them.
        """
        _check_name(name)
        key = _new_key()
        row = {"name": name, "key_hash": hash_key(key), "is_operator": operator}
        with database_errors(self._engine, "add vendor"):
            try:
                with self._engine.begin() as conn:
                    conn.execute(vendors.insert().values(row))
            except sa.exc.IntegrityError as exc:
                if self.retired(name):
                    raise ValueError(
                        f"vendor {name!r} was removed, and its jobs, results and records are kept under "
                        f"that name: choose another name, or delete them with `imgproc vendors purge {name}`"
                    ) from None
                raise ValueError(f"vendor {name!r} already exists") from exc
        return key

    def retired(self, name: str) -> bool:
        """Whether ``name`` is a removed vendor's, not purged yet."""
        query = sa.select(vendors.c.id).where(vendors.c.name == name, IS_RETIRED)
        with database_errors(self._engine, "read vendor"), self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    def authenticate(self, key: str) -> Vendor | None:
        """Return the vendor that owns ``key``, or None for an unknown key."""
        if not key:
            return None
        return self.authenticate_hash(hash_key(key))

    def authenticate_hash(self, digest: str) -> Vendor | None:
        """The vendor whose key has this SHA-256 digest: a browser session keeps the digest, never the key."""
        query = sa.select(*_COLUMNS).where(vendors.c.key_hash == digest)
        with database_errors(self._engine, "authenticate"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _vendor(row)

    def list(self) -> builtins.list[Vendor]:
        """Return every vendor (not a removed one), by name."""
        query = sa.select(*_COLUMNS).where(~IS_RETIRED).order_by(vendors.c.name)
        with database_errors(self._engine, "list vendors"), self._engine.connect() as conn:
            return [_vendor(row) for row in conn.execute(query)]

    def remove(self, name: str) -> bool:
        """Retire vendor ``name``: its key stops working and its name stays taken; whether it existed."""
        mark = RETIRED + secrets.token_hex(16)  # unique, as the column is
        query = (
            vendors.update()
            .where(vendors.c.name == name, ~IS_RETIRED)
            .values(key_hash=mark, is_operator=False)
        )
        with database_errors(self._engine, "remove vendor"), self._engine.begin() as conn:
            return conn.execute(query).rowcount > 0

    def purge(self, name: str) -> dict[str, int]:
        """Delete a removed vendor's rows (records, webhook messages and secrets) and free its name.

        One transaction; the counts deleted by table. Its Redis keys and result files are the
        caller's to delete first (``imgproc vendors purge``).
        """
        messages = sa.select(webhook_messages.c.id).where(webhook_messages.c.vendor == name)
        with database_errors(self._engine, "purge vendor"), self._engine.begin() as conn:
            counts = {
                "records": conn.execute(records.delete().where(records.c.vendor == name)).rowcount,
                "webhook attempts": conn.execute(
                    webhook_attempts.delete().where(webhook_attempts.c.message_id.in_(messages))
                ).rowcount,
                "webhook messages": conn.execute(
                    webhook_messages.delete().where(webhook_messages.c.vendor == name)
                ).rowcount,
                "webhook secrets": conn.execute(
                    webhook_secrets.delete().where(webhook_secrets.c.vendor == name)
                ).rowcount,
            }
            conn.execute(vendors.delete().where(vendors.c.name == name, IS_RETIRED))
        return counts

    def rotate(self, name: str) -> str:
        """Give vendor ``name`` a new API key and return it; the old key stops working."""
        key = _new_key()
        query = vendors.update().where(vendors.c.name == name, ~IS_RETIRED).values(key_hash=hash_key(key))
        with database_errors(self._engine, "rotate key"), self._engine.begin() as conn:
            if conn.execute(query).rowcount == 0:
                raise ValueError(f"no vendor named {name!r}")
        return key


class CachedVendors:
    """``Vendors.authenticate`` remembered for a few seconds per API process.

    Every request authenticates; the lookup was a third of an enqueue's time
    in the API (measured 0.4 of 1.3 ms). A removed or rotated key keeps
    working for at most ``ttl`` seconds in each API process (a disabled
    vendor's is refused sooner, through its published plan values).
    """

    MAX_ENTRIES = 10_000

    def __init__(self, vendors: Vendors, ttl: float = 5.0):
        self.vendors = vendors
        self.ttl = ttl
        self._seen: dict[str, tuple[Vendor | None, float]] = {}

    def authenticate(self, key: str) -> Vendor | None:
        """The vendor owning ``key`` (or None), from the cache while it is fresh."""
        return self.authenticate_hash(hash_key(key))

    def authenticate_hash(self, digest: str) -> Vendor | None:
        """The vendor of a key's digest (or None), from the cache while it is fresh."""
        now = time.monotonic()
        hit = self._seen.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        vendor = self.vendors.authenticate_hash(digest)
        if len(self._seen) >= self.MAX_ENTRIES:  # unknown keys cannot grow it without bound
            self._seen.clear()
        self._seen[digest] = (vendor, now + self.ttl)
        return vendor

    def __getattr__(self, name):
        return getattr(self.vendors, name)
