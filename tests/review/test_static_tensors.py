"""LayerKind.tensors(): the state_dict names and shapes, known without torch, equal the built module's."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from cnnspec.checker.checker import check
from cnnspec.checker.graph import Graph
from cnnspec.layers import REGISTRY
from cnnspec.layers.backbone import BACKBONES, RESNET_STAGES, resnet_tensors
from cnnspec.spec.load import loads
from tests.review.review_helpers import SPECS

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

# Every parameterised kind at least once, including the automatic residual projection.
ALL_KINDS = """
name: all-kinds
model:
  input: {channels: 3, height: 16, width: 16}
  layers:
    - conv2d: {id: c, out_channels: 8, kernel_size: 3, padding: 1, groups: 1}
    - conv2d: {id: grouped, out_channels: 8, kernel_size: [3, 1], padding: [1, 0], groups: 4, bias: false}
    - groupnorm: {id: gn, num_groups: 2}
    - batchnorm2d: {id: bn_plain, affine: false}
    - residual: {id: res, body: [conv2d: {out_channels: 16, kernel_size: 3, stride: 2, padding: 1}, batchnorm2d]}
    - conv_transpose2d: {id: up, out_channels: 4, kernel_size: 2, stride: 2, groups: 2}
    - layernorm: {id: ln}
    - maxpool2d: {kernel_size: 2}
    - flatten
    - linear: {id: fc1, out_features: 12, bias: false}
    - batchnorm1d: {id: bn1d}
    - linear: {id: fc2, out_features: 5}
"""


def static_tensors(graph: Graph) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for node in graph.nodes:
        tensors = node.layer.tensors(node.input_shapes)
        assert tensors is not None, f"{node.id} ({node.kind}) does not know its tensors"
        out |= {f"{node.id}.{name}": shape for name, shape in tensors.items()}
    return out


def offline(text: str) -> str:
    # Weights do not change shapes; `none` builds without a download.
    return re.sub(r"weights: \S+?([,}])", r"weights: none\1", text)


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_static_tensors_equal_the_built_state_dict(path: Path) -> None:
    from cnnspec.builder.graph_module import build

    graph = check(loads(offline(path.read_text(encoding="utf-8")), str(path)))
    built = {k: tuple(v.shape) for k, v in build(graph).state_dict().items()}
    assert static_tensors(graph) == built


def test_every_parameterised_kind_matches_torch() -> None:
    from cnnspec.builder.graph_module import build

    graph = check(loads(ALL_KINDS))
    kinds = {n.kind for n in graph.nodes if n.params or n.kind.startswith("batchnorm")}
    assert kinds == {
        "conv2d",
        "groupnorm",
        "batchnorm2d",
        "shortcut",
        "conv_transpose2d",
        "layernorm",
        "linear",
        "batchnorm1d",
    }
    built = {k: tuple(v.shape) for k, v in build(graph).state_dict().items()}
    assert static_tensors(graph) == built
    assert "res.downsample.0.weight" in built  # the projection shortcut is there


def test_parameter_tensors_add_up_to_the_checkers_counts() -> None:
    for text in [ALL_KINDS, *(offline(p.read_text()) for p in sorted(SPECS.glob("*.yaml")))]:
        graph = check(loads(text))
        for node in graph.nodes:
            tensors = node.layer.tensors(node.input_shapes) or {}
            numel = sum(math.prod(s) for k, s in tensors.items() if not k.endswith(BUFFERS))
            assert numel == node.params, node.id


@pytest.mark.parametrize("model", sorted(RESNET_STAGES))
def test_resnet_table_matches_the_backbone_parameter_counts(model: str) -> None:
    tensors = resnet_tensors(model)
    assert sum(math.prod(s) for k, s in tensors.items() if not k.endswith(BUFFERS)) == BACKBONES[model].params


def test_kinds_without_required_fields_match_their_torch_modules() -> None:
    """Each kind that validates with no fields: its static tensors and parameter count are the torch module's."""
    checked = []
    for kind, cls in REGISTRY.items():
        if cls.sugar:
            continue
        try:
            layer = cls.model_validate({"inputs": ["a", "b"]} if cls.many_inputs else {})
        except ValueError:
            continue  # needs fields: covered by ALL_KINDS
        inputs = [(4, 8, 8), (4, 8, 8)] if cls.many_inputs else [(4, 8, 8)]
        module = layer.build(inputs)
        assert layer.tensors(inputs) == {k: tuple(v.shape) for k, v in module.state_dict().items()}, kind
        assert layer.params(inputs) == sum(p.numel() for p in module.parameters()), kind
        checked.append(kind)
    assert {"relu", "flatten", "batchnorm2d", "layernorm", "add", "concat", "global_avgpool"} <= set(checked)
