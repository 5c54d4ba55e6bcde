"""ISNet's variants on this CPU: floor seconds, ratio to today's file, and mask quality per photo.

``python -m bench.variants`` (and ``make bench``, through bench/run.py) measures, in one process:

- the floor of each variant: ``run`` of a 1x3xSxS input of the bench's 2048x1536 photo, the
  variants alternated round by round and the median taken, so a slow minute of this shared
  machine slows them all alike; the ratio is to today's file (``isnet-general-use.onnx``, ONNX
  Runtime's CPU provider) in the same rounds;
- start-up: seconds to build each session (ONNX Runtime's graph optimisation included);
- quality against the reference, fp32 ISNet at 1024x1024 (``isnet-general-use.fp32.onnx``):
  mask IoU and DAVIS' boundary F on the gate's photos, each mask made by the worker's own
  pre- and post-processing (``BackgroundRemover.isnet_mask``); the gate is IoU >= 0.99 and
  boundary F >= 0.95 on every photo.

The CPU's flags (AVX2, AVX-512, VNNI) are printed and recorded beside the figures.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.maskquality import boundary_f, iou
from imgproc.config import ROOT, Settings

#: The gate's photos (people, a grey-level photo, an animal, objects, a busy background, a vehicle).
GATE_PHOTOS = ("astronaut", "two-people", "camera", "chelsea", "coffee", "rocket", "coins", "motorcycle")
#: What a variant must reach on every photo against fp32 ISNet at 1024x1024.
GATE_IOU, GATE_BOUNDARY_F = 0.99, 0.95
#: The reference file (float32 weights, exactly the provisioned float16 ones widened).
REFERENCE = "isnet-general-use.fp32.onnx"
TODAY = "fp16 file, ORT (today)"


def cpu_flags() -> list[str]:
    """The flags of /proc/cpuinfo that decide int8 and fp32 speed (AVX2, AVX-512, VNNI)."""
    wanted = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return sorted(wanted & set(line.split()))


def gate_photo(name: str) -> np.ndarray:
    """One gate photo as an RGB array (scikit-image's samples; ``two-people`` is the demo's composite)."""
    from PIL import Image
    from skimage import data

    if name == "two-people":
        from imgproc.testing import sample_photos

        return np.asarray(Image.open(io.BytesIO(sample_photos()["two-people"])).convert("RGB"))
    rgb = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return np.dstack([rgb] * 3) if rgb.ndim == 2 else np.ascontiguousarray(rgb[..., :3])


@dataclass
class Variant:
    """A way of running ISNet: a file, a backend and the input side it is fed."""

    name: str
    file: str
    backend: str = "ort"  # or "openvino"
    side: int = 1024  # the input's side (the worker's is 1024)
    level: str = "all"  # ONNX Runtime's graph optimisation level
    saved: bool = False  # load a graph ONNX Runtime optimised and saved before (optimized_model_filepath)
    note: str = ""
    runs: list[float] = field(default_factory=list)


def default_variants() -> list[Variant]:
    return [
        Variant(TODAY, "isnet-general-use.onnx", note="the provisioned float16 export, batch 1"),
        Variant("fp32 file, ORT", REFERENCE, note="weights widened to float32 (the reference)"),
        Variant("lean fp32, ORT", "isnet-general-use.lean.onnx", note="final output only, any size"),
        Variant(
            "lean fp32, ORT, saved optimised",
            "isnet-general-use.lean.onnx",
            saved=True,
            note="optimised graph saved once, loaded without optimising",
        ),
        Variant("lean fp32, ORT basic opt", "isnet-general-use.lean.onnx", level="basic"),
        Variant("lean fp32, OpenVINO", "isnet-general-use.lean.onnx", backend="openvino"),
        Variant("int8, ORT", "isnet-general-use.int8.onnx", note="static QDQ, per-channel, decoder fp32"),
        Variant("int8, OpenVINO", "isnet-general-use.int8.onnx", backend="openvino"),
        Variant("lean fp32 at 768", "isnet-general-use.lean.onnx", side=768),
        Variant("lean fp32 at 512", "isnet-general-use.lean.onnx", side=512),
    ]


def _ort_session(path: Path, v: Variant, threads: int, scratch: Path):
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }

    def options(level):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.enable_mem_pattern = False
        opts.graph_optimization_level = level
        return opts

    if v.saved:
        saved = scratch / f"{path.stem}.optimised.onnx"
        if not saved.exists():
            opts = options(levels[v.level])
            opts.optimized_model_filepath = str(saved)
            ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        path, level = saved, ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    else:
        level = levels[v.level]
    session = ort.InferenceSession(str(path), options(level), providers=["CPUExecutionProvider"])
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    return lambda x: session.run([name_out], {name_in: x})[0]


def _openvino_session(path: Path, threads: int):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    compiled = core.compile_model(
        model, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()
    return lambda x: next(iter(request.infer({0: x}).values()))


def load(v: Variant, models_dir: Path, threads: int, scratch: Path) -> tuple[Callable, float]:
    """``infer`` of a variant and the seconds its session took to build."""
    path = models_dir / v.file
    if v.saved:  # saved once before (as a first start-up would); the figure is a later start-up's
        _ort_session(path, v, threads, scratch)
    started = time.perf_counter()
    infer = (
        _openvino_session(path, threads)
        if v.backend == "openvino"
        else _ort_session(path, v, threads, scratch)
    )
    return infer, time.perf_counter() - started


def isnet_input(rgb: np.ndarray, side: int) -> np.ndarray:
    """The worker's ISNet input of ``rgb`` at ``side`` x ``side``."""
    from imgproc.processing.models import BackgroundRemover

    return BackgroundRemover.isnet_input(rgb, side)


def measure(models_dir: Path, threads: int, rounds: int, photos: list[str], log=print, names=None) -> dict:
    """Floors, start-up and quality of every variant whose file exists; the gate's verdict per variant."""
    from bench.photos import make_photo
    from imgproc.processing.models import BackgroundRemover

    variants = [v for v in default_variants() if names is None or v.name in names]
    missing = [v.name for v in variants if not (models_dir / v.file).is_file()]
    variants = [v for v in variants if v.name not in missing]
    if missing:
        log(f"variants skipped, their files missing (run `make models`): {', '.join(missing)}")
    import cv2

    floor_rgb = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(make_photo("2048x1536"), np.uint8), 1), cv2.COLOR_BGR2RGB
    )
    rgbs = {name: gate_photo(name) for name in photos}
    out: dict = {
        "cpu_flags": cpu_flags(),
        "threads": threads,
        "load_avg_start": os.getloadavg(),
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        ref_infer, _ = load(Variant("reference", REFERENCE), models_dir, threads, Path(tmp))
        refs = {n: BackgroundRemover.isnet_mask(ref_infer, rgb, 1024) for n, rgb in rgbs.items()}
        del ref_infer
        gc.collect()
        sessions = {}
        for v in variants:
            try:
                infer, seconds = load(v, models_dir, threads, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - a backend that cannot run here is reported, not fatal
                log(f"{v.name}: cannot load ({type(exc).__name__}: {str(exc)[:200]})")
                continue
            x = isnet_input(floor_rgb, v.side)
            infer(x)  # the first run sizes the arena
            quality = {}
            for n, rgb in rgbs.items():
                mask = BackgroundRemover.isnet_mask(infer, rgb, v.side)
                quality[n] = {
                    "iou": round(iou(mask, refs[n]), 4),
                    "boundary_f": round(boundary_f(mask, refs[n]), 4),
                }
            passes = all(
                q["iou"] >= GATE_IOU and q["boundary_f"] >= GATE_BOUNDARY_F for q in quality.values()
            )
            out["variants"][v.name] = {
                "file": v.file,
                "backend": v.backend,
                "side": v.side,
                "note": v.note,
                "load_s": round(seconds, 3),
                "quality": quality,
                "gate": passes,
            }
            sessions[v.name] = (infer, x)
            log(
                f"{v.name}: loaded in {seconds:.2f} s; gate {'passed' if passes else 'failed'}: "
                + ", ".join(f"{n} {q['iou']:.4f}/{q['boundary_f']:.3f}" for n, q in quality.items())
            )
        runs: dict[str, list[float]] = {name: [] for name in sessions}
        for r in range(rounds):  # alternated: each round runs every variant once
            for name, (infer, x) in sessions.items():
                started = time.perf_counter()
                infer(x)
                runs[name].append(time.perf_counter() - started)
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f}" for n, t in runs.items()))
    base = statistics.median(runs[TODAY]) if runs.get(TODAY) else None
    for name, times in runs.items():
        floor = statistics.median(times)
        out["variants"][name].update(
            floor_s=round(floor, 4),
            runs_s=[round(t, 3) for t in times],
            speedup=round(base / floor, 3) if base else None,
        )
    out["load_avg_end"] = os.getloadavg()
    return out


def table(results: dict) -> str:
    """The variants table: floor, speed-up over today's file, start-up, gate, worst IoU and boundary F."""
    rows = [
        "| variant | side | floor s | x today | load s | gate | worst IoU | worst boundary F |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    per_photo = []
    for name, v in results["variants"].items():
        q = v["quality"]
        worst_iou = min(q.values(), key=lambda p: p["iou"])
        worst_f = min(q.values(), key=lambda p: p["boundary_f"])
        rows.append(
            f"| {name} | {v['side']} | {v.get('floor_s', float('nan')):.3f} | {v.get('speedup') or 0:.2f}x | "
            f"{v['load_s']:.2f} | {'pass' if v['gate'] else 'FAIL'} | {worst_iou['iou']:.4f} | "
            f"{worst_f['boundary_f']:.3f} |"
        )
        per_photo.append(
            f"{name}: " + ", ".join(f"{n} {p['iou']:.4f}/{p['boundary_f']:.3f}" for n, p in q.items())
        )
    flags = ", ".join(results["cpu_flags"]) or "none of AVX2/AVX-512/VNNI"
    return (
        f"CPU flags: {flags}; {results['threads']} threads; load average {results['load_avg_start'][0]:.1f} "
        f"at the start, {results['load_avg_end'][0]:.1f} at the end\n"
        + "\n".join(rows)
        + "\n\nIoU / boundary F per photo:\n"
        + "\n".join(per_photo)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/variants.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternated timing rounds (median taken)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--photos", default=",".join(GATE_PHOTOS))
    parser.add_argument("--variant", action="append", help="only these variants (by name; repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-variants.json")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    settings = Settings.from_env()
    results = measure(
        Path(settings.models_dir), args.threads, args.rounds, args.photos.split(","), log, args.variant
    )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
