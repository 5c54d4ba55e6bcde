"""ISNet's CPU variants (issue 14, part 1): the lean file gives fp32 ISNet's masks; the gate's metrics.

ISNet runs 9 times in this file (the fp32 reference on 3 photos, the lean file on 2 and at 768x768,
the int8 one on 1 and its warm-up): each costs seconds here. The full gate (8 photos, every
variant, with floors) is ``python -m bench.variants``, run by ``make bench``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from bench.maskquality import boundary_f, iou
from bench.variants import GATE_BOUNDARY_F, GATE_IOU, REFERENCE, gate_photo
from imgproc.config import Settings
from imgproc.modelfiles import file_problem, load_manifest
from imgproc.modelfiles.variants import derive_variants
from imgproc.processing.models import BackgroundRemover, _first_output


def _square(shift: int = 0) -> np.ndarray:
    mask = np.zeros((400, 400), np.uint8)
    mask[100:300, 100 + shift : 300 + shift] = 255
    return mask


def test_iou_and_boundary_f_measure_what_davis_does():
    assert iou(_square(), _square()) == 1.0 and boundary_f(_square(), _square()) == 1.0
    # 2 px to the side: IoU drops by 2%, but every boundary pixel is within 0.8% of the
    # diagonal (566 px -> 5 px) of the other's, so the boundary F stays 1.
    assert iou(_square(2), _square()) == pytest.approx(198 / 202)
    assert boundary_f(_square(2), _square()) == 1.0
    # 20 px off: the vertical edges miss, the horizontal ones still match.
    f = boundary_f(_square(20), _square())
    assert 0.4 < f < 0.7
    assert boundary_f(np.zeros((400, 400), np.uint8), _square()) == 0.0 == iou(_square(), 0 * _square())


def _sessions(settings: Settings, *files: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.intra_op_threads
    for file in files:
        session = ort.InferenceSession(
            f"{settings.models_dir}/{file}", opts, providers=["CPUExecutionProvider"]
        )
        yield session, _first_output(session)


def test_make_models_verified_the_variants_it_makes():
    settings = Settings.from_env()
    logged = []
    derive_variants(settings.models_dir, logged.append)
    entries = load_manifest(settings.models_dir)["variants"]
    assert [f"{e['name']}: present and verified" for e in entries] == logged
    for entry in entries:
        assert file_problem(Path(settings.models_dir) / entry["name"], entry) is None


def test_lean_file_gives_fp32_isnets_mask_and_runs_at_other_sizes():
    settings = Settings.from_env()
    (_, reference), (lean_session, lean) = _sessions(settings, REFERENCE, "isnet-general-use.lean.onnx")
    assert [o.name for o in lean_session.get_outputs()] == ["output"]  # the side outputs are gone
    for name in ("two-people", "rocket"):  # people, and the busy background
        rgb = gate_photo(name)
        want = BackgroundRemover.isnet_mask(reference, rgb, 1024)
        got = BackgroundRemover.isnet_mask(lean, rgb, 1024)
        assert iou(got, want) >= GATE_IOU and boundary_f(got, want) >= GATE_BOUNDARY_F
        assert np.abs(got.astype(int) - want).max() <= 1  # the same graph: at most rounding
    # Its input size is symbolic and every Resize follows its input: 768x768 runs.
    assert lean(BackgroundRemover.isnet_input(rgb, 768)).shape == (1, 1, 768, 768)


def test_a_job_can_name_the_int8_model_and_its_masks_keep_the_gate_on_people():
    import onnx

    settings = Settings.from_env()
    settings = settings.replace(bg_model="isnet-general-use-int8", bg_models=("isnet-general-use-int8",))
    remover = BackgroundRemover(settings)  # loads isnet-general-use.int8.onnx, as a worker would
    graph = onnx.load(f"{settings.models_dir}/isnet-general-use.int8.onnx").graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 50  # really int8
    ((_, reference),) = _sessions(settings, REFERENCE)
    rgb = gate_photo("two-people")
    want = BackgroundRemover.isnet_mask(reference, rgb, 1024)
    got = remover.mask(rgb, "isnet-general-use-int8")
    assert iou(got, want) >= GATE_IOU and boundary_f(got, want) >= GATE_BOUNDARY_F


def test_quantizing_says_nothing_that_reads_like_an_error(tmp_path, caplog):
    """quantize_static's "Please consider pre-processing" advice (twice, on the root logger) is dropped.

    ``make models`` printed it as ``WARNING:root:...`` on a newcomer's first run; a one-Conv model
    quantized the way ``quantize_int8`` does shows it, and that it goes only inside our wrapper.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from imgproc.modelfiles.variants import _without_preprocessing_advice

    weights = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "one-conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])],
        [weights],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "in.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.inputs = iter([{"x": np.random.default_rng(0).random((1, 1, 8, 8), np.float32)}])

        def get_next(self):
            return next(self.inputs, None)

    def quantize() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            quantize_static(
                tmp_path / "in.onnx", tmp_path / "out.onnx", Reader(), quant_format=QuantFormat.QDQ
            )
        return [r.getMessage() for r in caplog.records if "pre-processing" in r.getMessage()]

    assert len(quantize()) == 2  # what make models printed
    with _without_preprocessing_advice():
        assert quantize() == []
    assert len(quantize()) == 2  # the filter is gone again
