"""Batched inference (issue 13): one session.run for several jobs, the same masks, one bad photo fails alone.

ISNet runs 12 times in this file (8 in the masks test, 4 in the worker's): each
costs seconds on this machine's CPU.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from imgproc.config import ROOT, Settings
from imgproc.modelfiles import isnet_file
from imgproc.processing.batching import MicroBatcher


def _together(calls):
    """Run every call in its own thread at once; their results (or exceptions) in order."""
    results = [None] * len(calls)

    def run(i):
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - returned for the test to look at
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_calls_run_as_one_batch_and_a_bad_row_fails_alone():
    seen = []

    def run(x):
        seen.append(len(x))
        if (x == -1).any():
            raise ValueError("bad row")
        return x * 2

    batcher = MicroBatcher(run, size=4, wait=5.0)  # a full batch runs at once, long before 5 s
    started = time.monotonic()
    out = _together([lambda i=i: batcher.infer(np.full((1, 2), i, np.float32)) for i in range(4)])
    assert time.monotonic() - started < 4.0 and list(batcher.runs) == [4]
    assert [float(o[0, 0]) for o in out] == [0.0, 2.0, 4.0, 6.0]

    out = _together([lambda v=v: batcher.infer(np.full((1, 2), v, np.float32)) for v in (1, -1, 3, 4)])
    assert isinstance(out[1], ValueError) and [float(out[i][0, 0]) for i in (0, 2, 3)] == [2.0, 6.0, 8.0]
    assert seen[-5:] == [4, 1, 1, 1, 1] and list(batcher.runs)[-3:] == [1, 1, 1]  # the batch, then one by one


def test_a_partial_batch_waits_at_most_its_wait():
    batcher = MicroBatcher(lambda x: x, size=8, wait=0.05)
    started = time.monotonic()
    batcher.infer(np.zeros((1, 1), np.float32))
    assert time.monotonic() - started < 1.0 and list(batcher.runs) == [1]


def test_the_file_of_each_precision_and_batch():
    assert isnet_file("isnet-general-use", "fp16", 1) == "isnet-general-use.onnx"
    assert isnet_file("isnet-general-use", "fp16", 4) == "isnet-general-use.fp16.onnx"
    assert isnet_file("isnet-general-use", "fp32", 1) == "isnet-general-use.fp32.onnx"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a >= 128, b >= 128
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_a_batch_of_four_gives_the_masks_of_batch_one(models, photos):
    """Four photos through the micro-batcher in one run of the batched file: the masks of batch 1."""
    from imgproc.processing.models import BackgroundRemover

    rgbs = [np.asarray(Image.open(io.BytesIO(photos[name])).convert("RGB")) for name in photos]
    rgbs.append(np.ascontiguousarray(rgbs[0][:, ::-1]))  # a fourth photo: the astronaut mirrored
    batched = BackgroundRemover(Settings(batch=4, batch_wait_ms=10_000))
    batcher = batched.batchers["isnet-general-use"]
    assert list(batcher.runs) == [1]  # the start-up run, alone
    masks = _together([lambda rgb=rgb: batched.mask(rgb, "isnet-general-use") for rgb in rgbs])
    assert list(batcher.runs) == [1, 4] and batcher.sizes == {1: 1, 4: 1}
    single = models[0]  # the provisioned file at batch 1, as a default worker runs it
    for rgb, mask in zip(rgbs, masks, strict=True):
        alone = single.mask(rgb, "isnet-general-use")
        assert mask.shape == alone.shape == rgb.shape[:2]
        diff = np.abs(mask.astype(int) - alone.astype(int))
        assert diff.max() <= 1 or _iou(mask, alone) >= 0.999, (diff.max(), _iou(mask, alone))


def test_a_worker_with_four_slots_finishes_four_jobs_one_photo_broken(
    app, client, vendor_key, photo_server, photos, settings, tmp_path
):
    from tests.conftest import process_env

    acme = vendor_key("acme")
    names = ["astronaut", "broken", "coffee", "two-people"]
    for name in names:
        photo_server.serve(f"/{name}.jpg", photos.get(name, b"\xff\xd8 this is not a JPEG"))
    jobs = {}
    for name in names:
        response = client.post(
            "/api/image-queue/remove-bg-queue",
            json={"record_id": name, "image_url": photo_server.url(f"/{name}.jpg")},
            headers=acme,
        )
        assert response.status_code == 202, response.json
        jobs[name] = response.json["job_id"]
    env = process_env(
        settings,
        IMGPROC_BATCH="4",
        IMGPROC_BATCH_WAIT_MS="3000",  # the three good photos meet in one run, decoded at their own pace
        IMGPROC_VENDOR_CONCURRENCY="4",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "worker.py", "--queues", "bg-removal", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    log = done.stderr + done.stdout
    assert done.returncode == 0, log
    assert "inference on CPUExecutionProvider, fp16, 4 job slot(s)" in log
    for i in range(4):
        assert f".slot{i}" in log  # four rq workers, one per slot
    views = {name: client.get(f"/api/image-queue/job/{job}", headers=acme).json for name, job in jobs.items()}
    assert views["broken"]["state"] == "failed", views["broken"]
    assert views["broken"]["error"]["code"] == "unsupported_image"
    for name in ("astronaut", "coffee", "two-people"):
        assert views[name]["state"] == "finished", (name, views[name], log[-3000:])
        assert views[name]["result"]["format"] == "png"
    # The worker's last line on its way out: its session runs by batch size (the start-up run, then the jobs).
    runs = re.search(r"isnet-general-use: (\d+) session runs, by batch size: (.*)", log)
    assert runs, log[-2000:]
    sizes = [tuple(map(int, pair.split(" x "))) for pair in runs.group(2).split(", ")]
    assert sum(n * size for n, size in sizes) == 4 and max(size for _, size in sizes) >= 2, runs.group(0)
    print(f"4 jobs on 4 slots in {time.monotonic() - started:.1f} s, start-up included; {runs.group(0)}")


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_batched_files_are_derived_and_verified(precision):
    from imgproc.modelfiles import file_problem, load_manifest

    entry = next(e for e in load_manifest(ROOT / "models")["derived"] if precision in e["name"])
    assert (
        file_problem(ROOT / "models" / entry["name"], entry) is None
    )  # `make models` made it, sha256 as pinned
