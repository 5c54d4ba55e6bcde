"""Webhooks in the database: vendors' signing secrets, messages and every delivery attempt.

A message is one event (``job.finished``, ``job.failed``, ``batch.completed``)
with a fixed body and a fixed ``webhook-id``; it is ``pending`` until a 2xx
answer makes it ``delivered``, or ``failed`` once its retries are spent (or a
410, or a refused address). Each attempt is a row of ``webhook_attempts``.
Secrets are ``whsec_`` + base64 of 32 random bytes (Standard Webhooks), kept
in plain text: a receiver needs the very key to check the signature.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any, Protocol

import sqlalchemy as sa

from .db import database_errors, utcnow, webhook_attempts, webhook_messages, webhook_secrets

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookMessages(Protocol):
    """What the worker asks of the webhook records."""

    def signing_secrets(self, vendor: str) -> list[str]: ...

    def create(
        self,
        message_id: str,
        vendor: str,
        type: str,
        url: str,
        body: str,
        *,
        job_id: str | None = None,
        batch_id: str | None = None,
    ) -> None: ...

    def get(self, message_id: str) -> dict[str, Any] | None: ...

    def record_attempt(
        self,
        message_id: str,
        *,
        attempt: int,
        url: str,
        state: str,
        status_code: int | None,
        error: str | None,
        latency_ms: int,
        next_try_at: dt.datetime | None,
    ) -> None: ...


class WebhookStore:
    """The webhook tables of one database."""

    def __init__(self, engine: sa.Engine, grace: float = 24 * 3600):
        self._engine = engine
        #: Seconds after a rotation during which the previous secret signs too.
        self.grace = grace

    # --- secrets ---------------------------------------------------------

    def secret(self, vendor: str, *, rotate: bool = False) -> str:
        """The vendor's current secret (made on first use), or a new one when ``rotate``."""
        with database_errors(self._engine, "read webhook secret"), self._engine.begin() as conn:
            current = self._newest(conn, vendor, 1)
            if current and not rotate:
                return current[0]["secret"]
            secret = new_secret()
            conn.execute(webhook_secrets.insert().values(vendor=vendor, secret=secret, created_at=utcnow()))
            return secret

    def signing_secrets(self, vendor: str) -> list[str]:
        """The secrets a message is signed with: the newest, and the one before during the grace period."""
        with database_errors(self._engine, "read webhook secrets"), self._engine.begin() as conn:
            rows = self._newest(conn, vendor, 2)
            if not rows:
                secret = new_secret()
                conn.execute(
                    webhook_secrets.insert().values(vendor=vendor, secret=secret, created_at=utcnow())
                )
                return [secret]
        keep = [rows[0]["secret"]]
        if len(rows) > 1 and utcnow() - rows[0]["created_at"] < dt.timedelta(seconds=self.grace):
            keep.append(rows[1]["secret"])
        return keep

    @staticmethod
    def _newest(conn: sa.Connection, vendor: str, count: int) -> list[dict]:
        query = (
            sa.select(webhook_secrets)
            .where(webhook_secrets.c.vendor == vendor)
            .order_by(webhook_secrets.c.created_at.desc(), webhook_secrets.c.id.desc())
            .limit(count)
        )
        return [dict(row._mapping) for row in conn.execute(query)]

    # --- messages and attempts ---------------------------------------------

    def create(
        self,
        message_id: str,
        vendor: str,
        type: str,
        url: str,
        body: str,
        *,
        job_id: str | None = None,
        batch_id: str | None = None,
    ) -> None:
        now = utcnow()
        with database_errors(self._engine, "create webhook message"), self._engine.begin() as conn:
            conn.execute(
                webhook_messages.insert().values(
                    id=message_id,
                    vendor=vendor,
                    type=type,
                    job_id=job_id,
                    batch_id=batch_id,
                    url=url,
                    body=body,
                    state=PENDING,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )

    def get(self, message_id: str) -> dict[str, Any] | None:
        with database_errors(self._engine, "read webhook message"), self._engine.connect() as conn:
            row = conn.execute(sa.select(webhook_messages).where(webhook_messages.c.id == message_id)).first()
        return None if row is None else dict(row._mapping)

    def record_attempt(
        self,
        message_id: str,
        *,
        attempt: int,
        url: str,
        state: str,
        status_code: int | None,
        error: str | None,
        latency_ms: int,
        next_try_at: dt.datetime | None,
    ) -> None:
        """One attempt's outcome: a row of its own, and the message's state."""
        now = utcnow()
        with database_errors(self._engine, "record webhook attempt"), self._engine.begin() as conn:
            conn.execute(
                webhook_attempts.insert().values(
                    message_id=message_id,
                    attempt=attempt,
                    url=url,
                    status_code=status_code,
                    error=error,
                    latency_ms=latency_ms,
                    next_try_at=next_try_at,
                    created_at=now,
                )
            )
            conn.execute(
                webhook_messages.update()
                .where(webhook_messages.c.id == message_id)
                .values(
                    state=state,
                    attempts=attempt,
                    last_status=status_code,
                    last_error=error,
                    next_try_at=next_try_at,
                    updated_at=now,
                )
            )

    def attempts(self, message_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(webhook_attempts)
            .where(webhook_attempts.c.message_id == message_id)
            .order_by(webhook_attempts.c.id)
        )
        with database_errors(self._engine, "read webhook attempts"), self._engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def redeliver(self, message_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """Reopen a message for an operator: (the message, None), or (the message or None, why not)."""
        message = self.get(message_id)
        if message is None:
            return None, f"no webhook {message_id}"
        if message["state"] == DELIVERED or not self.reopen(message_id):
            return message, (
                f"webhook {message_id} was delivered already (attempt {message['attempts']}, "
                f"HTTP {message['last_status']}); it is not sent again"
            )
        return message, None

    def failed(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """Messages that were not delivered and will not be tried again, newest first."""
        query = sa.select(webhook_messages).where(webhook_messages.c.state == FAILED)
        if vendor is not None:
            query = query.where(webhook_messages.c.vendor == vendor)
        query = query.order_by(webhook_messages.c.updated_at.desc())
        with database_errors(self._engine, "list failed webhooks"), self._engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def reopen(self, message_id: str) -> bool:
        """Make a message pending again (to be redelivered); False when there is none, or it was delivered.

        A delivered message is never sent again: its receiver has it (an operator's redeliver sent it twice).
        """
        with database_errors(self._engine, "reopen webhook message"), self._engine.begin() as conn:
            done = conn.execute(
                webhook_messages.update()
                .where(webhook_messages.c.id == message_id, webhook_messages.c.state != DELIVERED)
                .values(
                    state=PENDING,
                    next_try_at=None,
                    updated_at=utcnow(),
                )
            )
        return done.rowcount == 1
