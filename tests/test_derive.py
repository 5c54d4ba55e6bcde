"""The files ``make models`` derives (issue 13): symbolic batch and fp32 upcast, on a small float16 graph."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx", reason="onnx comes with the base install (setup.cfg)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from imgproc.errors import ChecksumMismatch  # noqa: E402
from imgproc.modelfiles import derive  # noqa: E402


def _float16_conversion() -> onnx.ModelProto:
    """What onnxconverter-common's float16 conversion (keep_io_types) makes of y = x @ w + b, batch 1."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 12).reshape(4, 3).astype(np.float16), "w")
    b = numpy_helper.from_array(np.array([0.5, -0.25, 1.0], np.float16), "b")
    nodes = [
        helper.make_node("Cast", ["input"], ["graph_input_cast_0"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["graph_input_cast_0", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["graph_output_cast_0"]),
        helper.make_node("Cast", ["graph_output_cast_0"], ["output"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        [w, b],
        value_info=[helper.make_tensor_value_info("mm", TensorProto.FLOAT16, [1, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_upcast_and_symbolic_batch_give_the_same_numbers_at_any_batch():
    source = _float16_conversion()
    assert derive.is_float16_conversion(source)
    x = np.linspace(-2, 2, 16).reshape(4, 4).astype(np.float32)
    alone = np.concatenate([_run(source, x[i : i + 1]) for i in range(4)])
    batched, wide = _float16_conversion(), _float16_conversion()
    derive.symbolic_batch(batched)
    derive.upcast(wide)
    derive.symbolic_batch(wide)
    assert {t.data_type for t in wide.graph.initializer} == {TensorProto.FLOAT}
    assert not derive.is_float16_conversion(wide)
    np.testing.assert_array_equal(_run(batched, x), alone)  # the same float16 graph, four rows at once
    # float32 arithmetic on the same (exactly widened) weights: within float16's rounding of the result
    np.testing.assert_allclose(_run(wide, x), alone, atol=2e-3)


def test_the_transforms_are_deterministic():
    made = []
    for _ in range(2):
        model = _float16_conversion()
        derive.upcast(model)
        derive.symbolic_batch(model)
        made.append(hashlib.sha256(model.SerializeToString()).hexdigest())
    assert made[0] == made[1]


def test_a_derived_file_is_checked_against_its_pinned_sha256(tmp_path, monkeypatch):
    source = _float16_conversion().SerializeToString()
    (tmp_path / "tiny.onnx").write_bytes(source)
    entry = {"name": "tiny.onnx", "size": len(source), "sha256": hashlib.sha256(source).hexdigest()}
    derived = {"name": "tiny.fp32.onnx", "from": "tiny.onnx", "transforms": ["upcast", "symbolic_batch"]}
    wrong = {**derived, "size": 1, "sha256": "0" * 64, "made_with": "a test"}
    manifest = {"files": [entry], "derived": [wrong]}
    monkeypatch.setattr(derive, "load_manifest", lambda _dir: json.loads(json.dumps(manifest)))
    with pytest.raises(ChecksumMismatch, match="tiny.fp32.onnx made from tiny.onnx has sha256"):
        derive.derive_models(tmp_path, log=lambda _m: None)
    assert not (tmp_path / "tiny.fp32.onnx").exists()  # nothing half-made is left under the name

    model = onnx.load_from_string(source)
    derive.upcast(model)
    derive.symbolic_batch(model)
    data = model.SerializeToString()
    manifest["derived"] = [{**derived, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    said = []
    assert derive.derive_models(tmp_path, log=said.append) == [tmp_path / "tiny.fp32.onnx"]
    assert "sha256 verified" in said[-1] and (tmp_path / "tiny.fp32.onnx").read_bytes() == data
    derive.derive_models(tmp_path, log=said.append)
    assert said[-1] == "tiny.fp32.onnx: present and verified"  # made once, then left alone
