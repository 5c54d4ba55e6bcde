"""``GET /api/image-queue/presets``: the ID-photo presets a face crop's ``preset`` option may name.

Behind the API key like every /api/ route (API.md "ID-photo presets").
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from imgproc.presets import PRESETS

bp = Blueprint("presets", __name__, url_prefix="/api/image-queue")


@bp.get("/presets")
def presets():
    return jsonify({"presets": [preset.asdict() for preset in PRESETS.values()]})
