"""``GET /api/image-queue/presets``: the presets a job's ``preset`` option may name, each with its job type.

The ID-photo presets (API.md "ID-photo presets") and the marketplace ones
("Marketplace presets") in one list. Which job type a preset applies to is
read from the job-type table: the job type whose ``preset`` option offers it.
Behind the API key like every /api/ route.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from imgproc.config import Settings
from imgproc.jobtypes import JOB_TYPES
from imgproc.optiontypes import form_of
from imgproc.presets import MARKETPLACES, PRESETS

from .services import services

bp = Blueprint("presets", __name__, url_prefix="/api/image-queue")


def job_types(settings: Settings) -> dict[str, str]:
    """Preset name -> the job type whose ``preset`` option accepts it."""
    owners = {}
    for jt in JOB_TYPES.values():
        preset = jt.schema(settings).get("preset")
        for name in form_of(preset[0])["choices"] if preset else ():
            owners[name] = jt.name
    return owners


@bp.get("/presets")
def presets():
    owners = job_types(services().settings)
    listed = [*PRESETS.values(), *MARKETPLACES.values()]
    return jsonify({"presets": [{**p.asdict(), "job_type": owners[p.name]} for p in listed]})
