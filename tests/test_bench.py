"""``make bench`` works: ``bench/run.py --quick`` runs every phase and writes its JSON (timing unchecked)."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from imgproc.config import ROOT
from imgproc.testing import stop_processes


def _stamp(path):
    return path.stat().st_mtime_ns if path.exists() else None


def run_bench(command: list[str], env: dict, timeout: float, tmp_path) -> subprocess.CompletedProcess:
    """Run a bench script; past ``timeout`` seconds, stop it and everything it started, and fail.

    The limit is only there for a hang: the bench's own waits end sooner, with a message.
    SIGINT first (its stack then stops its workers, gunicorn and embedded Redis), then its whole
    session is killed. ``subprocess.run(timeout=...)`` killed the bench alone and left its workers.
    """
    out, err = tmp_path / "bench.out", tmp_path / "bench.err"
    timed_out = False
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            stop_processes([proc], 60, signal.SIGINT)  # nothing to do when it has ended
    if timed_out:
        tail = out.read_text()[-3000:] + err.read_text()[-3000:]
        pytest.fail(f"{command[2]} still running after {timeout:.0f} s:\n{tail}")
    return subprocess.CompletedProcess(command, proc.returncode, out.read_text(), err.read_text())


#: Seconds ``--quick`` may take before it counts as hung. Measured on 2 cores: 200 s at load 2 to 3,
#: 466 and 511 s at load 6 to 13 (its ISNet floors: 10 to 25 s an inference); the limit was 230 s.
QUICK_LIMIT = 1200


@pytest.mark.timeout(QUICK_LIMIT + 120)  # its stop after the limit: up to 60 s
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
    proc = run_bench(command, env, QUICK_LIMIT, tmp_path)
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
    # A cut-out to a spec against the plain one, the model run once for every spec (bench/cutouts.py).
    cut = r["cutouts"]
    assert cut["plain_job_s"] > 0 and cut["model_runs"] == 1 and cut["zip_ratio"] > 0
    # Each spec's layout is timed (the mask alone may round to 0 s at the quick run's 512x512).
    assert cut["specs"]["amazon-main"]["layout_s"] > 0 and cut["specs"]["amazon-main"]["added_share"] > 0
    assert all(spec["layout_s"] >= 0 and spec["added_share"] >= 0 for spec in cut["specs"].values())
    assert all(spec["job_s"] > 0 for spec in cut["specs"].values())
    assert any(row["figure"].startswith("cut-out spec amazon-main,") for row in r["verdicts"])
    light = r["light"]
    assert light["imgproc"]["jobs_per_s"] > 0 and light["bare_rq"]["jobs_per_s"] > 0 and light["ratio"] > 0
    assert light["bare_rq_same_work"]["jobs_per_s"] > 0 and light["ratio_same_work"] > 0
    assert any(row["figure"] == "light jobs / bare RQ doing the same work" for row in r["verdicts"])
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
        "--idle",
        "0.2",
        "--threads",
        "8",
        "--var",
        str(tmp_path / "var"),
    ]
    proc = run_bench(command, env, 110, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [row["streams"] for row in r["rows"]] == [0, 3]
    assert all(row["p99_ms"] > 0 for row in r["rows"])
