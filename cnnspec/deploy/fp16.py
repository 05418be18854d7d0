"""fp16 weight storage: halve the file, keep fp32 inputs, outputs and arithmetic.

Each float32 weight matrix or kernel (2 or more dimensions) is stored as float16 and
cast back to float32 by a `Cast` node at the start of the graph; onnxruntime folds
those casts when it loads the model, so inference runs in fp32 with fp16-rounded
weights. One-dimensional tensors (biases, normalisation parameters, small running
variances that fp16 would flush towards zero) stay fp32: they are a tiny share of the
bytes. Inputs and outputs keep their float32 type, so callers feed the same arrays.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cnnspec.errors import ExportError

FP16_MAX = float(np.finfo(np.float16).max)
SUFFIX = "__fp16"


def fp16_weights(model: onnx.ModelProto) -> int:
    """Store the model's float32 weight tensors as float16 in place; returns how many were converted."""
    graph = model.graph
    casts: list[onnx.NodeProto] = []
    converted = 0
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type != onnx.TensorProto.FLOAT or len(tensor.dims) < 2:
            continue
        name = tensor.name  # `tensor` is overwritten in place below
        values = numpy_helper.to_array(tensor)
        peak = float(np.abs(values).max()) if values.size else 0.0
        if peak > FP16_MAX:
            raise ExportError(
                f"weight '{name}' holds {peak:.3g}, beyond float16's range (±{FP16_MAX:.0f})",
                hint="set export.fp16: false",
            )
        half = numpy_helper.from_array(values.astype(np.float16), name=name + SUFFIX)
        graph.initializer[index].CopyFrom(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT, name=f"cast_{name}"))
        converted += 1
    # value_info of a converted name still says float32, which is what the Cast produces.
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return converted
