"""The bench's verdicts: each figure against its target from the issue, the machine, and the printed table."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

#: Most e2e / floor per photo size.
E2E_TARGETS = {"512x512": 1.05, "2048x1536": 1.15, "4000x3000": 1.3}
#: Least imgproc / rembg-server images per minute per photo size.
REMBG_TARGETS = {"512x512": 1.0, "2048x1536": 1.2, "4000x3000": 1.5}
THROUGHPUT_TARGET = 0.95  # N workers' images/min ÷ the floor's images/min at their thread count
LIGHT_TARGET = 0.8  # imgproc light jobs/s ÷ bare RQ no-op jobs/s (issue 24's target)
#: imgproc light jobs/s ÷ bare RQ jobs doing the same work (fetch, fit, encode, write, record) per second.
SAME_WORK_TARGET = 0.8
#: Most share of a cut-out job's time that its spec (layout, background, shadow, report, confidence) takes.
CUTOUT_TARGET = 0.10
FAIR_TARGET = 0.9  # fair-share cycles/s at the most waiting vendors ÷ at the fewest
REMBG_API_TARGET = 1.5  # rembg.remove seconds ÷ imgproc seconds per 512x512 photo, one process
LATENCY_P99_MS = 25.0  # enqueue p99 at the concurrent clients
RSS_LIMIT_MIB = 1.5e9 / 2**20  # 1.5 GB after 50 jobs
#: "Flat" from job 50 to job 500: growth at most 5 % + 30 MiB (as in tests/faults/test_load.py).
FLAT_SHARE, FLAT_MIB = 0.05, 30.0
#: A worker's peak RSS during the largest job the default bounds allow (README: Limits; issue 22).
PEAK_RSS_LIMIT_MIB = 3072.0


def machine() -> dict:
    """Cores, CPU model, onnxruntime version, Python and the date of this run."""
    import onnxruntime

    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _row(name: str, value, shown: str, target: str, ok: bool | None) -> dict:
    return {"figure": name, "value": value, "shown": shown, "target": target, "pass": ok}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def verdicts(r: dict) -> list[dict]:
    """One row per figure of ``r`` (results.json), with its target and whether it is met (None: no target)."""
    rows = []
    floor = r["floor"]
    for f in floor.values():
        rows.append(
            _row(
                f"floor_s, {_n(f['threads'], 'thread')} (as {_n(f['workers_per_host'], 'worker')})",
                f["floor_s"],
                f"{f['floor_s']:.3f} s",
                "",
                None,
            )
        )
    rows.append(
        _row("model load (in-process)", r["model"]["load_s"], f"{r['model']['load_s']:.2f} s", "", None)
    )
    for size, e in r["e2e"].items():
        target = E2E_TARGETS.get(size)
        rows.append(
            _row(
                f"e2e {size} / floor",
                e["ratio"],
                f"{e['e2e_s']:.2f} s = {e['ratio']:.2f}x",
                f"<= {target}",
                e["ratio"] <= target if target else None,
            )
        )
    for key, t in r["throughput"].items():
        n_workers = key in ("n_workers", "replicas")
        how = " started one by one, defaults" if key == "replicas" else ""
        rows.append(
            _row(
                f"throughput {_n(t['workers'], 'worker')}{how}, {t['photos']} x {t['size']} / floor",
                t["ratio"],
                f"{t['images_per_min']:.1f}/min of {t['floor_images_per_min']:.1f} = {t['ratio']:.2f}x",
                f">= {THROUGHPUT_TARGET}" if n_workers else "",
                t["ratio"] >= THROUGHPUT_TARGET if n_workers else None,
            )
        )
    for size, c in r["rembg"].get("by_size", {}).items():
        target = REMBG_TARGETS.get(size)
        rows.append(
            _row(
                f"vs rembg server {size} ({c['photos']} photos)",
                c["ratio"],
                f"{c['imgproc_images_per_min']:.1f} vs {c['images_per_min']:.1f}/min = {c['ratio']:.2f}x",
                f">= {target}",
                c["ratio"] >= target if target else None,
            )
        )
    fair = r.get("fairshare") or []
    for row in fair[1:]:
        last = row is fair[-1]
        rows.append(
            _row(
                f"fair share, {row['vendors']} waiting vendors / {fair[0]['vendors']}",
                row["ratio"],
                f"{row['cycles_per_s']:.0f} vs {fair[0]['cycles_per_s']:.0f} cycles/s = {row['ratio']:.2f}x, "
                f"{row['script_mean_us']:.0f} us per script, {row['script_calls_over_1ms']} over 1 ms",
                f">= {FAIR_TARGET}" if last else "",
                row["ratio"] >= FAIR_TARGET if last else None,
            )
        )
    api = r.get("rembg_api")
    if api:
        rows.append(
            _row(
                f"vs rembg.remove in one process, {len(api['photos'])} x {api['size']}",
                api["ratio"],
                f"{api['rembg_s']:.2f} vs {api['imgproc_s']:.2f} s = {api['ratio']:.2f}x",
                f">= {REMBG_API_TARGET}",
                api["ratio"] >= REMBG_API_TARGET,
            )
        )
    cut = r.get("cutouts")
    for name, spec in (cut or {}).get("specs", {}).items():
        rows.append(
            _row(
                f"cut-out spec {name}, {cut['photo']}: layout / job",
                spec["added_share"],
                f"{(spec['layout_s'] + cut['confidence_s']) * 1000:.0f} ms of {spec['job_s']:.2f} s "
                f"= {spec['added_share']:.1%} ({spec['vs_plain_s'] * 1000:+.0f} ms vs plain)",
                f"<= {CUTOUT_TARGET:.0%}",
                spec["added_share"] <= CUTOUT_TARGET,
            )
        )
    if cut:
        rows.append(
            _row(
                f"RGBA PNG / zip bytes, {cut['photo']}",
                cut["zip_ratio"],
                f"{cut['png_bytes']} / {cut['specs']['zip']['bytes']} = {cut['zip_ratio']:.1f}x",
                "",
                None,
            )
        )
    light = r["light"]
    rows.append(
        _row(
            "light jobs / bare RQ no-ops",
            light["ratio"],
            f"{light['imgproc']['jobs_per_s']:.0f} vs {light['bare_rq']['jobs_per_s']:.0f}/s = "
            f"{light['ratio']:.2f}x",
            f">= {LIGHT_TARGET}",
            light["ratio"] >= LIGHT_TARGET,
        )
    )
    same = light.get("bare_rq_same_work")
    if same:  # results.json of runs before it had none
        rows.append(
            _row(
                "light jobs / bare RQ doing the same work",
                light["ratio_same_work"],
                f"{light['imgproc']['jobs_per_s']:.0f} vs {same['jobs_per_s']:.0f}/s = "
                f"{light['ratio_same_work']:.2f}x",
                f">= {SAME_WORK_TARGET}",
                light["ratio_same_work"] >= SAME_WORK_TARGET,
            )
        )
    for lat in r["enqueue_latency"].values():
        many = lat["clients"] > 1
        label = f"enqueue p99, {_n(lat['clients'], 'client')} ({lat.get('generator', 'python')})"
        rows.append(
            _row(
                label,
                lat["p99_ms"],
                f"p50 {lat['p50_ms']:.1f} / p99 {lat['p99_ms']:.1f} ms",
                f"<= {LATENCY_P99_MS:.0f} ms" if many else "",
                lat["p99_ms"] <= LATENCY_P99_MS if many else None,
            )
        )
    ceiling = r.get("enqueue_ceiling")
    if ceiling:
        bare = ceiling["bare_flask"]
        rows.append(
            _row(
                f"enqueues/s per core / bare Flask view, {_n(bare['clients'], 'client')}",
                ceiling["ratio"],
                f"{ceiling['api_per_s_per_core']:.0f} vs {ceiling['bare_per_s_per_core']:.0f}/s = "
                f"{ceiling['ratio']:.2f}x (bare p99 {bare['p99_ms']:.1f} ms)",
                "",
                None,
            )
        )
    mem = r["memory"]
    counts = list(mem["rss_mib"])
    for count, mib in mem["rss_mib"].items():
        limited = count == counts[1]
        rows.append(
            _row(
                f"worker RSS after {_n(int(count), 'job')}",
                mib,
                f"{mib:.0f} MiB",
                f"<= {RSS_LIMIT_MIB:.0f} MiB" if limited else "",
                mib <= RSS_LIMIT_MIB if limited else None,
            )
        )
    allowed = mem["rss_mib"][counts[1]] * FLAT_SHARE + FLAT_MIB
    rows.append(
        _row(
            f"worker RSS growth, job {counts[1]} to {counts[2]}",
            mem["growth_mib"],
            f"{mem['growth_mib']:+.0f} MiB",
            f"<= {allowed:.0f} MiB",
            mem["growth_mib"] <= allowed,
        )
    )
    for name, job in r.get("peak_memory", {}).get("jobs", {}).items():
        rows.append(
            _row(
                f"worker peak RSS: {name}",
                job["peak_rss_mib"],
                f"{job['peak_rss_mib']:.0f} MiB (+{job['peak_rise_mib']:.0f}), "
                f"{job['output']}, {job['seconds']:.1f} s",
                f"<= {PEAK_RSS_LIMIT_MIB:.0f} MiB",
                job["peak_rss_mib"] <= PEAK_RSS_LIMIT_MIB,
            )
        )
    if mem.get("worker_model_load_s") is not None:
        rows.append(
            _row(
                "model load (worker log)",
                mem["worker_model_load_s"],
                f"{mem['worker_model_load_s']:.2f} s",
                "",
                None,
            )
        )
    return rows


def table(rows: list[dict]) -> str:
    """The rows as aligned text: figure, value, target, PASS/FAIL."""
    cells = [("figure", "value", "target", "")] + [
        (row["figure"], row["shown"], row["target"], {True: "PASS", False: "FAIL", None: ""}[row["pass"]])
        for row in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)
