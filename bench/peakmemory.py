"""``make bench``'s peak-memory phase: a worker's peak RSS for the largest job of each kind (issue 22).

One worker on every queue with the default bounds. Before each job the
worker's peak RSS (``VmHWM``) is reset (``/proc/PID/clear_refs``, 5), so each
figure is that job's own: the highest RSS while it ran. The jobs are the
largest the bounds allow: a photo of ``IMGPROC_MAX_IMAGE_PIXELS`` through
background removal with both refinements (matting works on at most
``IMGPROC_MAX_MATTING_PIXELS``), a face crop and a resize to
``IMGPROC_MAX_OUTPUT_PIXELS``. ``--quick`` runs the same jobs at 0.5% of the
bounds, only to prove the phase works.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from imgproc.config import Settings
from imgproc.jobtypes import QUEUES

from .jobs import _finished, wait_job, workers

#: The photo of the largest background removal: a scikit-image sample enlarged to the input bound.
BIG = "max-input"


def _peak_kib(pid: int) -> int:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())[1])


def _rss_kib(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())[1])


def _big_photo(pixels: int) -> bytes:
    """A JPEG of ``pixels`` pixels at 4:3: coffee() enlarged (quality 90, a few MB)."""
    import io

    from PIL import Image
    from skimage import data

    height = math.isqrt(pixels * 3 // 4)
    width = pixels // height
    buf = io.BytesIO()
    photo = Image.fromarray(data.coffee()).resize((width, height), Image.Resampling.BILINEAR)
    photo.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def jobs(settings: Settings, scale: float) -> list[tuple[str, str, str, dict]]:
    """(name, job type, photo, options) of the largest job of each kind, at ``scale`` of the bounds."""
    side = math.isqrt(int(settings.max_output_pixels * scale))  # 5000x5000 by default
    return [
        (
            "remove-bg, input bound, alpha_matting + post_process_mask, png",
            "remove-bg",
            BIG,
            {"alpha_matting": True, "post_process_mask": True, "format": "png"},
        ),
        (
            "crop-face, output bound, remove_background, png",
            "crop-face",
            "512x512",
            {"size": [side, side], "remove_background": True, "format": "png"},
        ),
        (
            "process-image, resize to the output bound, png",
            "process-image",
            "small",
            {"resize": [side, side], "format": "png"},
        ),  # fmt: skip
    ]


def measure(b, quick: bool) -> dict:
    """Each job's seconds, output pixels and the worker's peak RSS while it ran (MiB)."""
    scale = 0.005 if quick else 1.0
    b.photos.data[BIG] = _big_photo(int(b.settings.max_image_pixels * scale))
    (proc,) = workers(b, 1, QUEUES)
    results: dict = {}
    try:
        pid = proc.pid
        idle = _rss_kib(pid)
        for name, job_type, photo, options in jobs(b.settings, scale):
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := the RSS now
            before = _rss_kib(pid)
            job = b.client.submit(job_type, b.photos.url(photo), record_id=f"peak-{job_type}", **options)
            view = _finished(wait_job(b.client, job.id, b.args.bulk_poll))
            peak = _peak_kib(pid)
            result = view.result
            results[name] = {
                "output": f"{result.width}x{result.height}",
                "seconds": round(result.duration_ms / 1000, 2),
                "rss_before_mib": round(before / 1024, 1),
                "peak_rss_mib": round(peak / 1024, 1),
                "peak_rise_mib": round((peak - before) / 1024, 1),
            }
            b.log(
                f"peak memory: {name}: {results[name]['output']}, worker peak RSS {peak / 1024:.0f} MiB "
                f"(+{(peak - before) / 1024:.0f} over {before / 1024:.0f})"
            )
    finally:
        b.stack.stop([proc])
    return {
        "scale": scale,
        "idle_rss_mib": round(idle / 1024, 1),
        "max_image_pixels": b.settings.max_image_pixels,
        "max_output_pixels": b.settings.max_output_pixels,
        "max_matting_pixels": b.settings.max_matting_pixels,
        "jobs": results,
        "peak_rss_mib": max(j["peak_rss_mib"] for j in results.values()),
        "photo_bytes": len(b.photos.data[BIG]),
    }
