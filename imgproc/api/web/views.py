"""The /ui/ blueprint: pages rendered by Jinja; what moves on them is drawn by the scripts in static/."""

from __future__ import annotations

import hmac
import secrets

from flask import Blueprint, Response, redirect, render_template, request, url_for

from imgproc.errors import NotFound

from .. import sessions
from ..services import services
from .forms import fieldsets, operations

#: No inline script, style or event handler runs; images may come from anywhere (vendors' originals).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: http: https:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

#: The page's routes, its templates and static files.
bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)


def _signed_in() -> dict | None:
    return sessions.current()


def _sign_in_page(error: str | None = None, status: int = 200):
    token = secrets.token_urlsafe(24)
    response = Response(render_template("sign_in.html", error=error, sign_in_token=token), status)
    sessions.set_cookie(response, sessions.SIGN_IN_COOKIE, token, max_age=3600)
    return response


def _page(template: str, **context):
    session = _signed_in()
    return render_template(
        template,
        vendor=session["vendor"],
        operator=session["operator"],
        csrf_token=session["csrf"],
        **context,
    )


@bp.after_request
def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"  # a page shows one vendor's data
    return response


@bp.context_processor
def job_types() -> dict:
    # Every page's scripts name the job types by the table's words (base.html's JSON block).
    return {"operations": operations()}


@bp.get("/")
def root():
    return redirect(url_for("web.home"))


@bp.get("/ui/")
def home():
    if _signed_in() is None:
        return _sign_in_page()
    return _page("vendor.html", fieldsets=fieldsets(services().settings))


@bp.post("/ui/sign-in")
def sign_in():
    expected = request.cookies.get(sessions.SIGN_IN_COOKIE, "")
    given = request.form.get("sign_in_token", "")
    if not expected or not hmac.compare_digest(expected, given):
        return _sign_in_page("The sign-in form had expired; please try again.", 400)
    key = request.form.get("api_key", "").strip()
    vendor = services().vendors.authenticate(key) if key else None
    if vendor is None:
        return _sign_in_page("That API key is not known. Check it and try again.", 401)
    response = redirect(url_for("web.home"), 303)
    sessions.set_cookie(response, sessions.COOKIE, sessions.open_session(services().conn, vendor, key))
    response.delete_cookie(sessions.SIGN_IN_COOKIE, path="/")
    return response


@bp.post("/ui/sign-out")
def sign_out():
    session = _signed_in()
    if session is not None:
        sessions.check_csrf(session["csrf"])
        sessions.close_session(services().conn, request.cookies[sessions.COOKIE])
    response = redirect(url_for("web.home"), 303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@bp.get("/ui/batch/<batch_id>")
def batch(batch_id: str):
    session = _signed_in()
    if session is None:
        return redirect(url_for("web.home"))
    try:
        view = services().jobs.batch_view(session["vendor"], batch_id, operator=session["operator"])
    except NotFound:
        return Response(_page("message.html", title="No such batch", text=f"No batch {batch_id}."), 404)
    return _page("batch.html", batch_id=batch_id, batch=view)


@bp.get("/ui/operator")
def operator():
    session = _signed_in()
    if session is None:
        return redirect(url_for("web.home"))
    if not session["operator"]:
        text = "This page is for operators: sign in with an operator's API key."
        return Response(_page("message.html", title="Operators only", text=text), 403)
    return _page("operator.html")
