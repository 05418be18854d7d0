"""`export` writes the statically known shape of every layer's output into the ONNX graph's value_info
(what Netron shows), and ONNX's own shape inference agrees with each one.

The exported file of specs/small_cnn.yaml (the session's export), and a small spec with both kinds
of residual shortcut and a concat exported by each of torch's exporters (dynamo, and the TorchScript
one that export falls back to, which stores no shapes of its own).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

import cnnspec
from cnnspec.checker.graph import Graph
from cnnspec.deploy.exporter import ExportReport
from cnnspec.deploy.onnx_export import _torchscript, to_onnx
from cnnspec.deploy.shapes import annotate, inferred_shapes

PREFIX = "output of layer "

RESIDUAL = """
name: tiny-residual
model:
  input: {channels: 3, height: 8, width: 8}
  layers:
    - conv2d: {id: stem, out_channels: 8, kernel_size: 3, padding: 1}
    - relu
    - residual:
        id: same
        body:
          - conv2d: {id: conv, out_channels: 8, kernel_size: 3, padding: 1}
          - batchnorm2d: {id: bn}
        activation: relu
    - residual:
        id: wider
        body:
          - conv2d: {id: conv, out_channels: 16, kernel_size: 3, stride: 2, padding: 1}
          - relu
    - concat: {id: both, inputs: [wider, wider]}
    - global_avgpool
    - flatten
    - linear: {id: fc, out_features: 3}
"""
# The layers that have an ONNX tensor of their own (torch 2.14.1's exporters, as pinned). The others
# have none: a conv whose batch norm was folded into it (dynamo names the fused node after the norm,
# TorchScript after the conv), an identity shortcut, a flatten of what is already flat (dynamo), and
# the last linear, whose tensor is the graph's output `logits`, declared with its shape already.
COMMON = {"stem", "relu_1", "same.add", "same.relu", "wider.conv", "wider.relu_1", "wider.downsample", "wider.add"}
WRITTEN = {
    "dynamo": COMMON | {"same.bn", "both", "global_avgpool_5"},
    "torchscript": COMMON | {"same.conv", "both", "global_avgpool_5", "flatten_6"},
}


def static_entries(model: onnx.ModelProto) -> dict[str, tuple[str, list[int | str]]]:
    """value_info name → (the layer its doc_string names, its dims), for the entries export wrote."""
    out = {}
    for v in model.graph.value_info:
        if v.doc_string.startswith(PREFIX):
            layer = v.doc_string.removeprefix(PREFIX).split(" ")[0]
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
            out[v.name] = (layer, dims)
    return out


def assert_agrees(model: onnx.ModelProto, graph: Graph, expected_layers: set[str]) -> None:
    entries = static_entries(model)
    assert {layer for layer, _ in entries.values()} == expected_layers
    inferred = inferred_shapes(model)  # from the graph alone, value_info removed
    for name, (layer, dims) in entries.items():
        assert dims == ["batch", *graph.node(layer).output_shape], name
        theirs = inferred[name]
        assert theirs is not None and theirs[1:] == dims[1:], f"{name}: ONNX infers {theirs}, cnnspec {dims}"
    # With the shapes written, strict shape inference finds no conflict anywhere in the graph.
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def test_the_exported_file_stores_each_layer_output_shape(small_cnn_export: ExportReport) -> None:
    model = onnx.load(str(small_cnn_export.path))
    graph = cnnspec.check(cnnspec.load(Path(__file__).resolve().parents[2] / "specs" / "small_cnn.yaml"))
    # conv1 and conv2 carry bn1's and bn2's folded outputs; the head's tensor is the graph output.
    expected = {"bn1", "relu_2", "maxpool2d_3", "bn2", "relu_6", "maxpool2d_7", "flatten_8", "linear_9", "relu_10"}
    assert_agrees(model, graph, expected)
    assert not any("value_info" in note for note in small_cnn_export.notes)


@pytest.fixture(scope="module")
def residual() -> tuple[Graph, torch.nn.Module]:
    spec = cnnspec.loads(RESIDUAL, "<tiny-residual>")
    torch.manual_seed(0)
    return cnnspec.check(spec), cnnspec.build(spec)


# The dynamo export of this 8×8 model takes 2–3 s on a quiet 2-core machine (more when it is the
# session's first: torch.onnx's own imports); it is the one place the shortcuts and concat go through it.
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_each_exporter_gets_the_static_shapes_and_inference_agrees(
    residual: tuple[Graph, torch.nn.Module], exporter: str
) -> None:
    graph, module = residual
    module.eval()
    if exporter == "dynamo":
        model = to_onnx(module, (3, 8, 8), 18, True).model
    else:
        with torch.no_grad():
            model = _torchscript(module, torch.rand(2, 3, 8, 8), 18, True)
    report = annotate(model, graph)
    assert report.disagreed == []
    assert sorted(report.tensors.values()) == sorted(WRITTEN[exporter])
    assert_agrees(model, graph, WRITTEN[exporter])


def test_a_shape_that_inference_contradicts_is_left_out_and_said(residual: tuple[Graph, torch.nn.Module]) -> None:
    graph, module = residual
    module.eval()
    with torch.no_grad():
        model = _torchscript(module, torch.rand(2, 3, 8, 8), 18, True)
    wrong = Graph(graph.spec, graph.input_shape, list(graph.nodes), graph.output)
    at = next(i for i, n in enumerate(wrong.nodes) if n.id == "both")
    from dataclasses import replace

    wrong.nodes[at] = replace(wrong.nodes[at], output_shape=(31, 4, 4))  # a checker that got concat wrong
    report = annotate(model, wrong)
    assert "both" not in report.tensors.values()
    assert len(report.disagreed) == 1
    assert report.disagreed[0].startswith("layer 'both': cnnspec's shape 31×4×4, ONNX infers 32×4×4")
