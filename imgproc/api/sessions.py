"""Browser sessions: the API key exchanged once, at sign-in, for a random session id in a cookie.

The key itself is never stored, nor put in a cookie, a URL or a page: the
session (vendor, CSRF token, and the key's SHA-256 as the vendors table keeps
it, so that rotating or removing the key ends the session) lives in Redis
under the SHA-256 of its id, for ``TTL`` seconds. The cookie is ``HttpOnly`` (no script reads
it), ``SameSite=Strict`` (no other site's page sends it) and ``Secure``
behind HTTPS. A request that changes something (anything but GET and HEAD)
also carries the session's CSRF token in ``X-CSRF-Token`` or the form field
``csrf_token``, or it is refused with 403 ``forbidden``. Requests with an
``X-API-Key`` header never look at the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

import redis
from flask import Response, g, request

from imgproc.adapters.vendors import Vendor, hash_key
from imgproc.errors import Forbidden, InvalidRequest

from .services import services

COOKIE = "imgproc_session"
#: The sign-in form's own token (a cookie and a hidden field that must agree): no other site signs you in.
SIGN_IN_COOKIE = "imgproc_sign_in"
KEY_SESSION = "imgproc:session:{}"
#: Seconds a session lasts from sign-in: a working day.
TTL = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _key(session_id: str) -> str:
    return KEY_SESSION.format(hashlib.sha256(session_id.encode()).hexdigest())


def open_session(conn: redis.Redis, vendor: Vendor, key: str) -> str:
    """A new session for ``vendor``, signed in with ``key``; returns its id (for the cookie only)."""
    session_id = secrets.token_urlsafe(32)
    data = {
        "vendor": vendor.name,
        "operator": vendor.operator,
        "csrf": secrets.token_urlsafe(32),
        # The key's digest, never the key: a rotated or removed key ends its sessions too.
        "key_hash": hash_key(key),
    }
    conn.set(_key(session_id), json.dumps(data), ex=TTL)
    return session_id


def close_session(conn: redis.Redis, session_id: str) -> None:
    conn.delete(_key(session_id))


def current() -> dict[str, Any] | None:
    """The session the request's cookie names (``vendor``, ``operator``, ``csrf``), or None."""
    if "imgproc_session" in g:
        return g.imgproc_session
    session_id = request.cookies.get(COOKIE, "")
    svc = services()
    raw = svc.conn.get(_key(session_id)) if 20 <= len(session_id) <= 100 else None
    session = json.loads(raw) if raw else None
    if session is not None:
        vendor = svc.vendors.authenticate_hash(session["key_hash"])
        if vendor is None:  # the key was rotated or removed since sign-in
            close_session(svc.conn, session_id)
            session = None
        else:
            session["operator"] = vendor.operator
    g.imgproc_session = session
    return session


def check_csrf(token: str) -> None:
    """Forbidden unless the request carries ``token`` (header or form field), for any unsafe method."""
    if request.method in SAFE_METHODS:
        return
    field = "X-CSRF-Token" if request.headers.get("X-CSRF-Token") else "csrf_token"
    given = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    if not given.isascii():  # compare_digest raises TypeError on other text: it was a 500
        raise InvalidRequest(f"{field} must be ASCII, as the page's token is", details={"field": field})
    if not given or not hmac.compare_digest(given, token):
        raise Forbidden("this request needs the page's CSRF token (X-CSRF-Token); reload the page")


def cookie_vendor() -> Vendor | None:
    """The vendor of the request's session cookie (its CSRF token checked), or None without a session."""
    session = current()
    if session is None:
        return None
    check_csrf(session["csrf"])
    g.via_session = True
    return Vendor(session["vendor"], bool(session["operator"]))


def set_cookie(response: Response, name: str, value: str, max_age: int | None = TTL) -> None:
    """A cookie no script can read and no other site's request carries; Secure behind HTTPS."""
    secure = request.is_secure or services().settings.public_url.startswith("https://")
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="Strict", secure=secure, path="/"
    )
