"""Enqueue requests, parsed once into what is enqueued (after thumbor's ``context.py:RequestParameters``).

A view hands ``parse_single`` or ``parse_bulk`` its job type and the vendor;
what comes back is the jobs as ``JobQueue.enqueue`` takes them (``NewJob``:
the payload a worker reads, the uploaded photo's bytes), every field checked,
or a ``RequestError`` naming the first field refused. A bulk is all or
nothing: every item is checked before any is enqueued.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import g, request

from imgproc import identifiers
from imgproc.adapters.urls import UrlPolicy, check_url, check_webhook_url
from imgproc.config import Settings
from imgproc.errors import InvalidOptions, InvalidRequest, PayloadTooLarge, TooManyItems, UnsupportedMediaType
from imgproc.jobtypes import JobType, Payload
from imgproc.queueing import NewJob

from .options import validate

SINGLE_FIELDS = {"record_id", "image_url", "options", "webhook_url", "idempotency_key"}
BULK_FIELDS = {"items", "options", "webhook_url"}
ITEM_FIELDS = {"record_id", "image_url", "options"}


@dataclass(frozen=True)
class SingleRequest:
    """One job to enqueue, and the idempotency key that makes its request safe to send again."""

    job: NewJob
    idempotency_key: str | None = None


def request_fields() -> tuple[dict[str, Any], Any]:
    """An enqueue request's fields and its uploaded file (multipart), or its JSON object."""
    if request.mimetype == "application/json":
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # the parser recurses once per level: 100,000 '[' were a 500
            raise InvalidRequest("the JSON body is nested too deeply", details={"field": "body"}) from None
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return data, None
    if request.mimetype == "multipart/form-data":
        fields: dict[str, Any] = dict(request.form)
        if "options" in fields:
            try:
                fields["options"] = json.loads(fields["options"])
            except (ValueError, RecursionError):
                raise InvalidRequest(
                    "the options field must be a JSON object", details={"field": "options"}
                ) from None
        return fields, request.files.get("image")
    raise UnsupportedMediaType("send application/json, or multipart/form-data with an image file")


def parse_single(job_type: JobType, vendor: str, settings: Settings, url_policy: UrlPolicy) -> SingleRequest:
    """``POST /<single_endpoint>``: one job, of an image URL or an uploaded file."""
    fields, upload = request_fields()
    _unknown(fields, SINGLE_FIELDS)
    record_id = _record_id(fields.get("record_id"))
    options = validate(job_type, fields.get("options"), settings)
    webhook_url = fields.get("webhook_url")
    if webhook_url is not None:
        webhook_url = check_webhook_url(webhook_url, url_policy)
    photo, image_url = None, None
    if upload is not None:
        photo = upload.read(settings.max_image_bytes + 1)
        if len(photo) > settings.max_image_bytes:
            raise PayloadTooLarge(f"the image is over {settings.max_image_bytes} bytes")
    elif isinstance(fields.get("image_url"), str):
        image_url = check_url(fields["image_url"])
    else:
        raise InvalidRequest("give image_url, or upload the image as the multipart file 'image'")
    key = fields.get("idempotency_key")
    if key is not None:
        key = _identifier(key, "idempotency_key", 255)
    payload = Payload(
        vendor,
        job_type.name,
        record_id,
        options,
        image_url=image_url,
        upload=photo is not None,
        webhook_url=webhook_url,
    )
    return SingleRequest(NewJob(payload, photo=photo), key)


def parse_bulk(job_type: JobType, vendor: str, settings: Settings, url_policy: UrlPolicy) -> list[NewJob]:
    """``POST /<bulk_endpoint>``: up to the plan's ``max_items`` jobs of URLs; item options over the bulk's.

    The vendor's plan is the one the limits' hook read for this request (``g.plan``); without it,
    the default plan's ``max_bulk_items``.
    """
    fields, _ = request_fields()
    _unknown(fields, BULK_FIELDS)
    items = fields.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("items must be a non-empty list")
    most = g.plan.terms.max_items if "plan" in g else settings.max_bulk_items
    if len(items) > most:
        raise TooManyItems(f"{len(items)} items, at most {most} per request", details={"max_items": most})
    defaults = fields.get("options") or {}
    if not isinstance(defaults, dict):
        raise InvalidRequest("options must be a JSON object")
    webhook_url = fields.get("webhook_url")
    if webhook_url is not None:
        webhook_url = check_webhook_url(webhook_url, url_policy)
    found = []
    for i, item in enumerate(items):
        where = f"items[{i}]: "
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}each item must be a JSON object")
        _unknown(item, ITEM_FIELDS, where)
        own = item.get("options") or {}
        if not isinstance(own, dict):
            raise InvalidRequest(f"{where}options must be a JSON object")
        try:
            options = validate(job_type, {**defaults, **own}, settings)
        except InvalidOptions as exc:
            raise exc.of_item(i) from None
        if not isinstance(item.get("image_url"), str):
            raise InvalidRequest(f"{where}image_url is required")
        record_id = _record_id(item.get("record_id"), where)
        payload = Payload(
            vendor,
            job_type.name,
            record_id,
            options,
            image_url=check_url(item["image_url"]),
            webhook_url=webhook_url,
        )
        found.append(NewJob(payload))
    return found


def _identifier(value: Any, field: str, longest: int, where: str = "") -> str:
    """A record id or idempotency key: 1 to ``longest`` characters, none of them a control character."""
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        raise InvalidRequest(f"{where}{field} must be a string of 1 to {longest} characters")
    problem = identifiers.problem(value)
    if problem:
        raise InvalidRequest(f"{where}{field} {problem}", details={"field": field})
    return value


def _record_id(value: Any, where: str = "") -> str:
    return _identifier(value, "record_id", 191, where)


def _unknown(fields: dict, allowed: set[str], where: str = "") -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidRequest(f"{where}unknown field {unknown[0]!r}")
