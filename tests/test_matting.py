"""Edge refinement: the same pixels as rembg's, and a worker that runs it from a read-only install.

In both Docker images the worker runs unprivileged over a root-owned install and
home, where numba (under pymatting) had nowhere to cache its kernels: every
``alpha_matting`` or ``post_process_mask`` job failed with ``internal``. Here the
real worker runs with its site-packages, source and home mounted read-only.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image
from rq.job import Job

from imgproc.processing import matting
from tests.conftest import process_env

ROOT = Path(__file__).resolve().parent.parent
REMOVE_BG = "/api/image-queue/remove-bg-queue"


def noisy_mask(seed: int = 1) -> np.ndarray:
    """A soft disc with specks outside and pin holes inside, as a model's mask can have."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320]
    mask = np.clip((90 - np.hypot(yy - 120, xx - 160)) * 40 + 128, 0, 255).astype(np.uint8)
    for y, x in rng.integers(0, [240, 320], size=(60, 2)):
        mask[y, x] = 255 - mask[y, x]
    return mask


def test_post_process_matches_rembgs_formula():
    from scipy.ndimage import gaussian_filter
    from skimage.morphology import opening

    mask = noisy_mask()
    # rembg.bg.post_process, written out (importing rembg.bg compiles pymatting's kernels).
    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)  # cv2's 3x3 ellipse
    reference = opening(mask, kernel)
    reference = np.where(gaussian_filter(reference.astype(np.float64), sigma=2) < 127, 0, 255).astype(
        np.uint8
    )
    ours = matting.post_process(mask)
    assert set(np.unique(ours)) <= {0, 255}
    assert np.mean(ours != reference) < 0.001
    assert ours[120, 160] == 255 and ours[5, 5] == 0  # pin holes filled, specks gone
    assert np.count_nonzero(ours[:20]) == 0


def test_trimap_matches_rembgs_erosions():
    from scipy.ndimage import binary_erosion

    mask = noisy_mask(2)
    structure = np.ones((matting.ERODE, matting.ERODE), np.uint8)
    fg = binary_erosion(mask > matting.FOREGROUND, structure=structure)
    bg = binary_erosion(mask < matting.BACKGROUND, structure=structure, border_value=1)
    reference = np.full(mask.shape, 128, np.uint8)
    reference[fg] = 255
    reference[bg] = 0
    assert np.array_equal(matting.trimap(mask), reference)


def _kernel_files(cache: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


def test_read_only_worker_finishes_matting_without_compiling(
    client, vendor_key, photos, photo_server, settings
):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        reason = "needs root and unshare(1) to mount the install read-only"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    cache = settings.matting_cache_dir
    before = _kernel_files(cache)
    if not any(name.endswith(".nbi") for name in before):
        pytest.fail(f"pymatting's kernels are not compiled in {cache}: run `make models`")

    photo_server.serve("/coffee.jpg", photos["coffee"])
    acme = vendor_key("acme")
    cases = {"plain": {}, "matting": {"alpha_matting": True}, "cleaned": {"post_process_mask": True}}
    ids = {}
    for name, options in cases.items():
        body = {"record_id": name, "image_url": photo_server.url("/coffee.jpg"), "options": options}
        answer = client.post(REMOVE_BG, json=body, headers=acme)
        assert answer.status_code == 202, answer.json
        ids[name] = answer.json["job_id"]

    import pymatting

    site_packages = Path(pymatting.__file__).resolve().parent.parent
    read_only = [site_packages, Path.home().resolve(), ROOT / "imgproc"]
    script = (
        "set -e\n"
        'for d in "$@"; do mount --bind "$d" "$d"; mount -o remount,bind,ro "$d"; done\n'
        'for d in "$@"; do ! touch "$d/.rw-probe" 2>/dev/null || { echo "$d is writable"; exit 98; }; done\n'
        'exec "$PYTHON" worker.py --queues bg-removal --burst\n'
    )
    env = process_env(settings, PYTHON=sys.executable)
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", *map(str, read_only)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    results, seconds = {}, {}
    for name, job_id in ids.items():
        job = client.get(f"/api/image-queue/job/{job_id}", headers=acme).json
        assert job["state"] == "finished", (name, job.get("error"), proc.stderr[-3000:])
        media = client.get(urlsplit(job["result"]["url"]).path)
        assert media.status_code == 200
        results[name] = np.asarray(Image.open(io.BytesIO(media.data)).convert("RGBA"))
        media.close()
        rq_job = Job.fetch(job_id, connection=client.application.extensions["imgproc"].conn)
        seconds[name] = (rq_job.ended_at - rq_job.started_at).total_seconds()
    print("read-only worker, seconds per job:", {k: round(v, 2) for k, v in seconds.items()})

    soft = {name: np.count_nonzero((a[..., 3] > 0) & (a[..., 3] < 255)) for name, a in results.items()}
    assert soft["cleaned"] == 0, "post-processing leaves a hard 0/255 edge"
    assert soft["matting"] > 0 and not np.array_equal(results["matting"], results["plain"])
    assert _kernel_files(cache) == before, "the worker compiled pymatting's kernels instead of loading them"
