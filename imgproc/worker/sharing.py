"""What a worker must share with the API, and the warnings it logs at start when it does not.

A worker writes results to storage and records to the database; the API
serves both. Shared means: the same database (MariaDB, or one SQLite file on
one host), and the same storage (Cloudinary, or a folder both mount). A
worker in a container whose storage folder or SQLite file lies on the
container's own layer (the root filesystem is an ``overlay`` and no volume
is mounted there) shares neither: ``docker run imgproc:cpu`` alone. That is
a warning, not a refusal: an API in the same container could still serve it.

The API's address is shared too: a worker writes a local result's URL into
the records row, the vendor's own table and the webhook, where no request
says where the API is; without ``IMGPROC_PUBLIC_URL`` it writes ``/media/<key>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from imgproc.config import Settings

MOUNTINFO = Path("/proc/self/mountinfo")


def read_mounts(mountinfo: Path = MOUNTINFO) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of this process's mounts; empty where there is no /proc."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) > 4 and rest:
            # mountinfo escapes spaces and tabs in paths as octal (\040).
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
            mounts.append((point, rest.split()[0]))
    return mounts


def on_container_layer(path: str, mounts: list[tuple[str, str]]) -> bool:
    """Whether ``path`` lies on a container's own writable layer: its mount is ``/``, an overlay."""
    resolved = str(Path(path).resolve())
    points = [(p, fs) for p, fs in mounts if resolved == p or resolved.startswith(p.rstrip("/") + "/")]
    if not points:
        return False
    point, fstype = max(points, key=lambda m: len(m[0]))
    return point == "/" and fstype == "overlay"


def unshared(
    settings: Settings, *, stores_results: bool = True, mounts: list[tuple[str, str]] | None = None
) -> list[str]:
    """A warning for each thing this worker writes where no API in another container can read it."""
    mounts = read_mounts() if mounts is None else mounts
    warnings = []
    if stores_results and not settings.cloudinary_url and on_container_layer(settings.storage_dir, mounts):
        warnings.append(
            f"results go to {settings.storage_dir}, on this container's own filesystem: no API in another "
            "container can serve them, and they vanish with this container. Mount there a volume the API "
            "mounts too (docker-compose.yml's `media`), or set CLOUDINARY_URL"
        )
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if on_container_layer(url.database, mounts):
            warnings.append(
                f"records go to the SQLite file {url.database}, on this container's own filesystem: the API "
                "neither sees them nor the vendors it adds. Set IMGPROC_DATABASE_URL to the API's database "
                "(MariaDB in docker-compose.yml)"
            )
    return warnings


def unaddressed(settings: Settings, *, stores_results: bool = True) -> list[str]:
    """The warning of a worker that writes local results' URLs without knowing the API's address."""
    if not stores_results or settings.cloudinary_url or settings.public_url:
        return []
    return [
        "IMGPROC_PUBLIC_URL is not set: records rows, write-backs and webhooks get results' URLs relative "
        "to the API (/media/<key>); the API's own answers are absolute. Set it to the address clients "
        "reach the API at (https://imgproc.example.com) to store absolute URLs"
    ]
