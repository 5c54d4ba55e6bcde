"""Old task paths, kept so that jobs queued before the role packages still run.

rq stores each job's function path in Redis; jobs enqueued by imgproc 0.1
name ``imgproc.tasks.remove_bg``, ``crop_face`` or ``process_image`` with the
same payload dict that ``imgproc.worker.tasks.run`` reads. New jobs name
``imgproc.worker.tasks.run``. This module goes in 0.3.0: by then every job of
0.1 has ended and expired (``IMGPROC_FAILURE_TTL``, 7 days by default).
"""

from __future__ import annotations

from imgproc.worker.tasks import run

remove_bg = crop_face = process_image = run

__all__ = ["crop_face", "process_image", "remove_bg"]
