"""``make bench`` works: ``bench/run.py --quick`` runs every phase and writes its JSON (timing unchecked)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from imgproc.config import ROOT


def _stamp(path):
    return path.stat().st_mtime_ns if path.exists() else None


@pytest.mark.timeout(240)
def test_quick_bench_writes_every_figure(tmp_path):
    out = tmp_path / "results.json"
    committed = ROOT / "bench" / "results.json"
    before = _stamp(committed)
    # Its own embedded Redis: the bench flushes its database between phases.
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--quick",
        "--out",
        str(out),
        "--var",
        str(tmp_path / "var"),
    ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())

    assert {
        "machine",
        "model",
        "floor",
        "enqueue_latency",
        "e2e",
        "throughput",
        "rembg",
        "light",
        "memory",
        "settings",
        "verdicts",
    } <= set(r)
    assert r["quick"] is True and r["machine"]["cores"] >= 1 and r["machine"]["onnxruntime"]
    for floor in r["floor"].values():
        assert floor["floor_s"] > 0 and floor["threads"] >= 1 and floor["images_per_min"] > 0
    assert r["e2e"] and all(
        e["e2e_s"] > 0 and e["ratio"] > 0 and e["job_duration_ms"] for e in r["e2e"].values()
    )
    assert set(r["throughput"]) == {"1_worker", "n_workers", "replicas"}  # replicas: started one by one
    assert all(t["images_per_min"] > 0 and t["ratio"] > 0 for t in r["throughput"].values())
    # ISNet's variants phase (bench/variants.py): today's file, its floor and its masks against fp32.
    today = r["variants"]["variants"]["fp16 file, ORT (today)"]
    assert today["floor_s"] > 0 and today["speedup"] == 1.0 and today["gate"] is True
    # A worker's peak RSS for the largest job of each kind, at 0.5% of the bounds (bench/peakmemory.py).
    peaks = r["peak_memory"]["jobs"]
    assert len(peaks) == 3 and all(j["peak_rss_mib"] >= j["rss_before_mib"] > 0 for j in peaks.values())
    # The fair share's feed at 5 and 100 waiting vendors (bench/fairshare.py), on a Redis of its own.
    assert [row["vendors"] for row in r["fairshare"]] == [5, 100]
    assert all(row["cycles_per_s"] > 0 and row["script_mean_us"] > 0 for row in r["fairshare"])
    # rembg's own Python API on the same photo in the same process (bench/rembg_api.py).
    assert r["rembg_api"]["imgproc_s"] > 0 and r["rembg_api"]["rembg_s"] > 0 and r["rembg_api"]["ratio"] > 0
    light = r["light"]
    assert light["imgproc"]["jobs_per_s"] > 0 and light["bare_rq"]["jobs_per_s"] > 0 and light["ratio"] > 0
    assert len(r["enqueue_latency"]) == 2
    assert all(lat["p99_ms"] >= lat["p50_ms"] > 0 for lat in r["enqueue_latency"].values())
    # wrk where it is installed, else Python client threads
    assert {lat["generator"] for lat in r["enqueue_latency"].values()} == {
        "wrk" if shutil.which("wrk") else "python"
    }
    if shutil.which("wrk"):  # the ceiling: a bare Flask view under the same gunicorn and wrk
        ceiling = r["enqueue_ceiling"]
        assert ceiling["bare_flask"]["per_s"] > 0 and ceiling["ratio"] > 0
        assert any(row["figure"].startswith("enqueues/s per core / bare Flask") for row in r["verdicts"])
    assert list(r["memory"]["rss_mib"]) == ["1", "3", "5"] and all(
        v > 0 for v in r["memory"]["rss_mib"].values()
    )
    assert all({"figure", "value", "target", "pass"} <= set(row) for row in r["verdicts"])
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout  # the table was printed
    assert _stamp(committed) == before  # the committed results of the last full run are left alone


@pytest.mark.timeout(120)
def test_streams_bench_measures_enqueue_beside_open_streams(tmp_path):
    """``python -m bench.streams``: open streams really stay open, and enqueues are timed beside them."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    command = [
        sys.executable,
        "-m",
        "bench.streams",
        "--streams",
        "0,3",
        "--clients",
        "2",
        "--seconds",
        "1",
        "--requests",
        "5",
        "--threads",
        "8",
        "--var",
        str(tmp_path / "var"),
    ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [row["streams"] for row in r["rows"]] == [0, 3]
    assert all(row["p99_ms"] > 0 for row in r["rows"])
