"""Checking a webhook from imgproc on the receiving end (Standard Webhooks signatures)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from .errors import WebhookVerificationError


def verify_webhook(
    secret: str, headers: dict[str, str], body: bytes | str, tolerance: float = 300
) -> dict[str, Any]:
    """The message, once a signature matches ``secret`` (compared in constant time) and it is recent.

    Raises ``WebhookVerificationError`` otherwise; de-duplicate on ``headers["webhook-id"]``.
    """
    headers = {k.lower(): v for k, v in headers.items()}
    raw = body.encode() if isinstance(body, str) else body
    try:
        msg_id, stamp, signatures = (
            headers["webhook-id"],
            headers["webhook-timestamp"],
            headers["webhook-signature"],
        )
        sent = int(stamp)
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook headers") from None
    if abs(time.time() - sent) > tolerance:
        raise WebhookVerificationError("the timestamp is too far from now (replayed, or a clock far off)")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    for version, _, signature in (s.partition(",") for s in signatures.split()):
        try:
            if version == "v1" and hmac.compare_digest(base64.b64decode(signature), expected):
                return json.loads(raw)
        except ValueError:
            continue
    raise WebhookVerificationError("no signature matches the secret")
