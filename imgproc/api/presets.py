"""``GET /api/image-queue/presets``: the ID-photo presets a face crop's ``preset`` option may name."""

from __future__ import annotations

from flask import Blueprint, jsonify

from imgproc.presets import PRESETS


def build_presets() -> Blueprint:
    """The presets listing (API.md "ID-photo presets"), behind the API key like every /api/ route."""
    bp = Blueprint("presets", __name__, url_prefix="/api/image-queue")

    @bp.get("/presets")
    def presets():
        return jsonify({"presets": [preset.asdict() for preset in PRESETS.values()]})

    return bp
