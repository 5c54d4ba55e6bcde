"""Job options of API.md: validated and filled with defaults before anything is enqueued.

The options of each job type are its schema in ``imgproc.jobtypes``; the
kinds of value they take are in ``imgproc.optiontypes``.
"""

from __future__ import annotations

from typing import Any

from imgproc.config import Settings
from imgproc.errors import InvalidOptions
from imgproc.jobtypes import JOB_TYPES, JobType


def validate(job_type: JobType | str, options: Any, settings: Settings) -> dict[str, Any]:
    """Check every option of a job and return them all, defaults filled in."""
    jt = JOB_TYPES[job_type] if isinstance(job_type, str) else job_type
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidOptions("options", "must be a JSON object")
    schema = jt.schema(settings)
    unknown = sorted(set(options) - set(schema))
    if unknown:
        raise InvalidOptions(unknown[0], f"is not an option of {jt.name} (known: {', '.join(schema)})")
    result = {}
    for name, (check, default) in schema.items():
        value = options.get(name)
        result[name] = default if value is None else check(name, value)
    if jt.cross_check is not None:
        jt.cross_check(options, result)
    return result
