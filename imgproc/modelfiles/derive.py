"""Model files `make models` makes of the provisioned ones: ISNet with a symbolic batch, fp16 and fp32.

The provisioned ISNet (``@imgly/background-removal-data``'s "medium") is already
onnxconverter-common's float16 conversion with ``keep_io_types=True``: its weights
are float16, and Casts named ``graph_input_cast_*`` / ``graph_output_cast_*`` keep
float32 at the edges. Its batch dimension is fixed at 1. ``models/manifest.json``
lists under ``derived`` what is made of it:

    isnet-general-use.fp16.onnx   the same graph, batch dimension symbolic
    isnet-general-use.fp32.onnx   weights upcast to float32, Casts to float16 made Casts to float32,
                                  batch dimension symbolic (float16 weights are exact in float32)

Both transforms are deterministic (converted twice, the same sha256), so the manifest
records each file's size and sha256, checked after every derivation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from imgproc.errors import ChecksumMismatch, ModelMissing

from .manifest import file_problem, load_manifest
from .provision import _atomic_file

Log = Callable[[str], None]


def symbolic_batch(model) -> None:
    """Make the first dimension of every graph input and output the symbol ``batch`` (in place)."""
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    # Shapes inferred for batch 1 would contradict a larger batch; ONNX Runtime infers them again.
    del model.graph.value_info[:]


def upcast(model) -> None:
    """Turn a float16 conversion back into a float32 graph (in place): weights, constants and Casts."""
    import numpy as np
    from onnx import AttributeProto, TensorProto, numpy_helper

    def widen(tensor) -> None:
        if tensor.data_type == TensorProto.FLOAT16:
            wide = numpy_helper.to_array(tensor).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(wide, tensor.name))

    for tensor in model.graph.initializer:
        widen(tensor)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                widen(attr.t)
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT


def is_float16_conversion(model) -> bool:
    """Whether ``model`` looks like onnxconverter-common's float16 output with keep_io_types=True."""
    from onnx import TensorProto

    weights = {t.data_type for t in model.graph.initializer}
    casts = {o for n in model.graph.node if n.op_type == "Cast" for o in n.output}
    return weights == {TensorProto.FLOAT16} and "graph_input_cast_0" in casts


TRANSFORMS = {"symbolic_batch": symbolic_batch, "upcast": upcast}


def derive_models(models_dir: str | os.PathLike, log: Log = print) -> list[Path]:
    """Write every ``derived`` file of the manifest that is missing or wrong, from its verified source."""
    return make_section(models_dir, "derived", TRANSFORMS, log)


def make_section(
    models_dir: str | os.PathLike, section: str, transforms: dict[str, Callable], log: Log = print
) -> list[Path]:
    """Write every file of the manifest's ``section`` that is missing or wrong: its source, verified, put
    through its ``transforms`` in order, then checked against the sha256 the manifest pins.

    Shared by ``derived`` (here) and ``variants`` (``variants``); an entry whose
    ``needs`` (a package) is missing is left out with a line saying so.
    """
    import importlib.util

    import onnx

    models_dir = Path(models_dir)
    manifest = load_manifest(models_dir)
    entries = {
        e["name"]: e for e in manifest["files"] + manifest.get("derived", []) + manifest.get("variants", [])
    }
    written = []
    for entry in manifest.get(section, []):
        target = models_dir / entry["name"]
        if file_problem(target, entry) is None:
            log(f"{entry['name']}: present and verified")
            written.append(target)
            continue
        needs = entry.get("needs")
        if needs and importlib.util.find_spec(needs.replace("scikit-image", "skimage")) is None:
            log(f"{entry['name']}: not made, it needs {needs} (the dev extra)")
            continue
        source = models_dir / entry["from"]
        if problem := file_problem(source, entries[entry["from"]]):
            raise ModelMissing(
                f"{entry['name']} is made from {entry['from']}, which is {problem}; run `make models`"
            )
        model = onnx.load(str(source))
        if "upcast" in entry["transforms"] and not is_float16_conversion(model):
            raise ModelMissing(f"{entry['from']} is not a float16 conversion; {entry['name']} cannot be made")
        for name in entry["transforms"]:
            transforms[name](model)
        data = model.SerializeToString()
        if (got := hashlib.sha256(data).hexdigest()) != entry["sha256"]:
            raise ChecksumMismatch(
                f"{entry['name']} made from {entry['from']} has sha256 {got}, not {entry['sha256']} "
                f"(made with {entry['made_with']}; another onnx may serialise differently)"
            )
        with _atomic_file(target) as out:
            out.write(data)
        log(f"{entry['name']}: made from {entry['from']} ({', '.join(entry['transforms'])}), sha256 verified")
        written.append(target)
    return written
