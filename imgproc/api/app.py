"""``create_app(settings)``: the Flask application, its services and its one error shape."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import sqlalchemy as sa
from flask import Flask, abort, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from imgproc.config import Settings
from imgproc.errors import ImgprocError, TransientError
from imgproc.queueing import placement

from . import listings, metrics, operator, pauses, plans, presets, streams, vendors, web
from .metrics import init_metrics
from .ratelimits import RequestLimits
from .routes import api, authenticate
from .services import Services, services

log = logging.getLogger("imgproc.api")

#: HTTP errors raised by Flask/Werkzeug itself, in API.md's codes.
HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(code: str, message: str, status: int, details: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API for ``settings`` (from the environment when not given)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    if settings.trusted_proxies:
        # Only behind proxies that set them: the address in results' URLs, the scheme of cookies.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)
    # Werkzeug refuses a longer body with 413 before reading it into memory.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.extensions["imgproc"] = svc = Services.build(settings)
    app.before_request(authenticate)  # before the limits' hook: limits are per vendor
    app.extensions[listings.LIMITS] = limits = RequestLimits(svc.conn, settings)
    limits.init_app(app)
    init_metrics(app, svc)
    # The blueprints are module-level, shared by every app of the process: what differs per app
    # (its services, limits, metrics registry) is in app.extensions, read at request time.
    app.register_blueprint(api)
    app.register_blueprint(streams.bp)
    app.register_blueprint(metrics.bp)  # its hooks time every request: after the limits' check
    app.register_blueprint(listings.bp)
    app.register_blueprint(operator.bp)
    app.register_blueprint(vendors.bp)  # the operator's vendors: list, add, rotate
    app.register_blueprint(plans.bp)  # plans; a vendor's plan, overrides, disabled flag
    app.register_blueprint(pauses.bp)  # the operator's pauses: pause, resume, pauses
    app.register_blueprint(presets.bp)  # GET /api/image-queue/presets
    app.register_blueprint(web.bp)  # the web page, /ui/ (imgproc.api.web)

    @app.after_request
    def hardened(response):
        # A result under /media/ may carry a vendor's bytes (EXIF): no browser guesses a type for them.
        response.headers["X-Content-Type-Options"] = "nosniff"
        location = urlsplit(response.headers.get("Location", ""))
        if location.netloc and location.netloc == request.host:
            # Werkzeug builds its slash redirect (/ui -> /ui/) on the request's Host, which the
            # client chooses (Host: evil.example sent the browser there): redirects are relative.
            response.headers["Location"] = urlunsplit(location._replace(scheme="", netloc=""))
        return response

    @app.errorhandler(ImgprocError)
    def imgproc_error(exc: ImgprocError):
        status = exc.status
        if isinstance(exc, TransientError):  # a service is down: the client may retry
            return error_response("unavailable", exc.message, 503)
        response = error_response(exc.code, exc.message, status, exc.details)
        if getattr(exc, "retry_after", None):  # a refusal that passes with time (too_many_uploads)
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(redis.RedisError)
    def redis_down(exc):
        log.warning("Redis unavailable: %s", exc)
        return error_response("unavailable", "the queue (Redis) is unreachable; nothing was enqueued", 503)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        return error_response(HTTP_CODES.get(status, "http_error"), exc.description or exc.name, status)

    @app.errorhandler(Exception)
    def internal(exc: Exception):
        log.exception("unhandled error")
        return error_response("internal", "internal error", 500)

    @app.get("/health")
    def health():
        svc = services()
        parts: dict[str, Any] = {"status": "ok"}
        failing = []
        try:
            svc.conn.ping()
            parts["redis"] = "ok"
            parts["workers"] = svc.jobs.workers()
            # The execution provider the registered workers really run (issue 13): no silent CPU fallback.
            parts["providers"] = placement.summary(svc.conn)
            parts["webhooks"] = backlog = svc.jobs.webhook_backlog()
            if backlog["warning"]:
                parts["status"] = "degraded"  # the API serves; the vendors' webhooks wait
                parts["warnings"] = [backlog["warning"]]
        except redis.RedisError:
            parts["redis"] = "unreachable"
            parts["workers"] = None
            parts["providers"] = None
            parts["webhooks"] = None
            failing.append("redis")
        try:
            with svc.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            parts["database"] = "ok"
        except sa.exc.SQLAlchemyError:
            parts["database"] = "unreachable"
            failing.append("database")
        if failing:
            parts["status"] = "unavailable"
            parts["failing"] = failing
            return jsonify(parts), 503
        return jsonify(parts)

    @app.get("/media/<path:key>")
    def media(key: str):
        try:
            path = services().storage.local_path(key)
        except ValueError:
            abort(404)
        if path is None:  # results kept elsewhere (Cloudinary): nothing is served from here
            abort(404)
        return send_from_directory(path.parent, path.name, max_age=86400)

    return app
