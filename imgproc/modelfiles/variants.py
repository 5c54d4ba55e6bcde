"""ISNet variants for CPU that `make models` makes of the verified fp32 file (issue 14, part 1).

    lean(model)            only the final mask output (the five side outputs and their 1024x1024
                           upsamplings dropped), identity Casts removed, height and width symbolic
                           with every Resize sized by the tensor it is joined to (the export had
                           fixed sizes), so one file runs at any input size
    quantize_int8(model)   static int8 (QDQ, per-channel weights) of a lean graph, calibrated on
                           real photos, its last layers kept in float32
    derive_variants(dir)   writes each ``variants`` entry of the manifest that is missing or wrong

The lean transform is deterministic and exact (the same mask bit for bit at 1024x1024). Whether
the int8 file is deterministic is recorded in the manifest's ``made_with``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .derive import make_section

Log = Callable[[str], None]

#: The photos of scikit-image's data module that calibrate the int8 file: none of them is one of
#: the quality gate's (bench/variants.py), so the gate does not measure photos the ranges saw.
CALIBRATION_PHOTOS = ("clock", "colorwheel", "immunohistochemistry", "retina", "hubble_deep_field", "logo")


def _sorted_nodes(nodes, known: set[str]) -> list:
    """``nodes`` in an order where every input is made before it is used (stable Kahn sort)."""
    out, pending, known = [], list(nodes), set(known) | {""}
    while pending:
        rest = []
        for n in pending:
            if all(i in known for i in n.input):
                out.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("the graph has a cycle or an input nobody makes")
        pending = rest
    return out


def _replace_nodes(graph, nodes) -> None:
    copies = []
    for n in nodes:
        c = type(n)()
        c.CopyFrom(n)
        copies.append(c)
    del graph.node[:]
    graph.node.extend(copies)


def lean(model) -> None:
    """Keep the final mask only, drop identity Casts, make height and width symbolic (in place)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    first = g.output[0]
    del g.output[1:]
    for value, (h, w) in ((g.input[0], ("height", "width")), (first, ("height", "width"))):
        dims = value.type.tensor_type.shape.dim
        for i, name in ((2, h), (3, w)):
            dims[i].ClearField("dim_value")
            dims[i].dim_param = name
    # A Cast to float of a float (what the upcast left of the float16 conversion) is an identity.
    rename = {}
    for n in g.node:
        to = next((a.i for a in n.attribute if a.name == "to"), None)
        if n.op_type == "Cast" and to == TensorProto.FLOAT and n.output[0] != first.name:
            rename[n.output[0]] = n.input[0]
    nodes = [n for n in g.node if n.output[0] not in rename]

    def source(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for n in nodes:
        for i, name in enumerate(n.input):
            n.input[i] = source(name)
    made = {o: n for n in nodes for o in n.output}
    used_by: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            used_by.setdefault(i, []).append(n)
    # Each Resize's sizes were Concat(Shape(x)[:2], Constant [h, w]) traced at 1024: take [h, w]
    # from the tensor the Resize's output is concatenated with (ISNet's _upsample_like), or the input.
    extra = []
    for n in nodes:
        if n.op_type != "Resize":
            continue
        sizes = made[n.input[3]]
        joined = next((c for c in used_by.get(n.output[0], []) if c.op_type == "Concat"), None)
        target = next(i for i in joined.input if i != n.output[0]) if joined else g.input[0].name
        shape, hw, start, end = (f"{n.name}/{s}" for s in ("target_shape", "target_hw", "start", "end"))
        g.initializer.extend(
            [
                numpy_helper.from_array(np.array([2], np.int64), start),
                numpy_helper.from_array(np.array([4], np.int64), end),
            ]
        )
        extra += [
            helper.make_node("Shape", [target], [shape], name=shape),
            helper.make_node("Slice", [shape, start, end], [hw], name=hw),
        ]
        sizes.input[1] = hw
    # Only what the final output needs, in an order ONNX accepts (the float16 converter appended Casts).
    needed, stack, keep = set(), [first.name], []
    made = {o: n for n in nodes + extra for o in n.output}
    while stack:
        n = made.get(stack.pop())
        if n is not None and id(n) not in needed:
            needed.add(id(n))
            keep.append(n)
            stack.extend(i for i in n.input if i)
    keep_ids = {id(n) for n in keep}
    ordered = [n for n in nodes + extra if id(n) in keep_ids]
    weights = {t.name for t in g.initializer}
    _replace_nodes(g, _sorted_nodes(ordered, {g.input[0].name} | weights))
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.value_info[:]


def _calibration_inputs(size: int):
    """ISNet inputs of the calibration photos, preprocessed as the worker does."""
    import cv2
    import numpy as np
    from skimage import data

    for name in CALIBRATION_PHOTOS:
        rgb = getattr(data, name)()
        rgb = np.dstack([rgb] * 3) if rgb.ndim == 2 else rgb[..., :3]
        x = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        x *= 1.0 / max(float(x.max()), 1e-6)
        x -= 0.5
        yield {"input": np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis])}


#: Layers kept in float32: the stem and the whole decoder (measured in bench/variants.py: with only
#: the last stage and the head kept, IoU against fp32 fell to 0.78-0.99 and the boundary F to 0.16).
FP32_PREFIXES = (
    "/conv_in/",
    "/stage1/rebnconvin/",
    "/stage5d/",
    "/stage4d/",
    "/stage3d/",
    "/stage2d/",
    "/stage1d/",
    "/side1/",
)


class _PreprocessingAdvice(logging.Filter):
    """Drops onnxruntime.quantization's "Please consider (to run) pre-processing before quantization"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider")


@contextmanager
def _without_preprocessing_advice():
    """Silence that advice during our own quantize_static call, and only there.

    quantize_static logs it through the root logger (``WARNING:root:...`` on the terminal of
    ``make models``, where it reads like an error) whenever the graph lacks quant_pre_process's
    metadata. We skip that pre-processing on purpose: the lean graph is already the cleaned-up one,
    and the int8 file must come out as the manifest's sha256 pins it, which a pass of onnxruntime's
    own optimiser before quantizing would change.
    """
    advice = _PreprocessingAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_int8(model) -> None:
    """Replace a lean graph by its static int8 QDQ quantisation (in place)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        # One photo per stride: the calibrator holds every intermediate tensor of the photos of a
        # stride (GBs at 1024x1024), so ranges are merged photo by photo.
        def __init__(self):
            self.inputs = list(_calibration_inputs(1024))
            self.set_range(0, len(self.inputs))

        def __len__(self):
            return len(self.inputs)

        def set_range(self, start_index: int, end_index: int):
            self.pending = iter(self.inputs[start_index:end_index])

        def get_next(self):
            return next(self.pending, None)

    exclude = [n.name for n in model.graph.node if n.name.startswith(FP32_PREFIXES) or n.op_type == "Sigmoid"]
    with tempfile.TemporaryDirectory() as tmp, _without_preprocessing_advice():
        src, out = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(src))
        quantize_static(
            str(src),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=exclude,
            extra_options={"CalibStridedMinMax": 1},
        )
        model.CopyFrom(onnx.load(str(out)))


TRANSFORMS = {"lean": lean, "quantize_int8": quantize_int8}


def derive_variants(models_dir: str | os.PathLike, log: Log = print) -> list[Path]:
    """Write every ``variants`` file of the manifest that is missing or wrong, from its verified source."""
    return make_section(models_dir, "variants", TRANSFORMS, log)
