"""Hand-made ONNX classifiers whose real output disagrees with their declared shape and metadata (the
deploy findings of issue 14), shared by the reliability and serve tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cnnspec.deploy.metadata import ModelMetadata, attach
from cnnspec.spec.dump import dump_spec
from cnnspec.spec.load import loads

CLASSES = ["cat", "dog"]
# What the lying graph's metadata embeds as its spec, so that bench gets as far as running it: it takes
# the file's input (3×16×16) and returns one logit per class name.
EMBEDDED = """
name: lie
model:
  input: {channels: 3, height: 16, width: 16}
  layers:
    - flatten
    - linear: {out_features: 2}
"""


def lying_model(width: int) -> onnx.ModelProto:
    """Input [N, 3, 16, 16], declared output [N, 2], really [N, `width`] (3: the channel means; 1: the
    image mean), with an exported run's metadata for the two classes cat and dog (the tester's file)."""
    if width == 3:
        nodes = [helper.make_node("ReduceMean", ["input"], ["logits"], axes=[2, 3], keepdims=0)]
    else:
        nodes = [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Flatten", ["mean"], ["logits"], axis=1),
        ]
    graph = helper.make_graph(
        nodes,
        "lie",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    spec = dump_spec(loads(EMBEDDED, file="<lie>"))
    attach(model, ModelMetadata(input_shape=[3, 16, 16], class_names=CLASSES, spec=spec, spec_name="lie"))
    return model


def _classifier(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], name: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    attach(model, ModelMetadata(input_shape=[3, 16, 16], class_names=CLASSES, spec_name=name))
    return model


def switching_model() -> onnx.ModelProto:
    """Declared [N, 2]: two columns (the first two channel means) while the batch's mean is at most 0.5, three
    once it is above: a probe of zeros passes, a bright input does not (what only a run-time check sees)."""
    const = [
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
        numpy_helper.from_array(np.array(2, dtype=np.int64), "two"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3], keepdims=0),  # (N, 3)
        helper.make_node("ReduceMean", ["input"], ["all"], keepdims=0),  # ()
        helper.make_node("Greater", ["all", "half"], ["bright"]),
        helper.make_node("Cast", ["bright"], ["extra"], to=TensorProto.INT64),
        helper.make_node("Add", ["extra", "two"], ["width"]),
        helper.make_node("Unsqueeze", ["width", "zero"], ["end"]),
        helper.make_node("Slice", ["means", "zero", "end", "axis"], ["logits"]),
    ]
    return _classifier(nodes, const, "switch")
