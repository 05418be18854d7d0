"""Shared by the build tests: make a spec from a layer list, build it, and compare torch with the checker."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import torch
from torch import nn

import cnnspec
from cnnspec.builder.graph_module import SpecModule
from cnnspec.checker.graph import Graph
from cnnspec.spec.model import Spec


def spec_text(layers: str, shape: tuple[int, int, int] = (3, 16, 16), blocks: str = "") -> str:
    """A spec with this input shape; `layers` (and `blocks`) are YAML lists/mappings at column 0."""
    c, h, w = shape
    text = f"name: t\nmodel:\n  input: {{channels: {c}, height: {h}, width: {w}}}\n"
    if blocks:
        text += "  blocks:\n" + textwrap.indent(textwrap.dedent(blocks).strip("\n"), "    ") + "\n"
    return text + "  layers:\n" + textwrap.indent(textwrap.dedent(layers).strip("\n"), "    ") + "\n"


def make_spec(layers: str, shape: tuple[int, int, int] = (3, 16, 16), blocks: str = "") -> Spec:
    return cnnspec.loads(spec_text(layers, shape, blocks), "test.yaml")


@dataclass
class Observed:
    """What torch did: every layer's output shape (without the batch axis) and parameter count."""

    shapes: dict[str, tuple[int, ...]]
    params: dict[str, int]
    output: torch.Tensor


def run_with_hooks(graph: Graph, model: SpecModule, batch: int = 2, *, train: bool = False) -> Observed:
    """Run `model` on a random batch, recording each layer's output shape through forward hooks."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for node in graph.nodes:

        def hook(_m: nn.Module, _in: object, out: torch.Tensor, node_id: str = node.id) -> None:
            shapes[node_id] = tuple(out.shape[1:])

        handles.append(model.layer(node.id).register_forward_hook(hook))
    params = {node.id: sum(p.numel() for p in model.layer(node.id).parameters()) for node in graph.nodes}
    model.train(train)
    try:
        x = torch.randn(batch, *graph.input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return Observed(shapes, params, out)


def assert_agrees(graph: Graph, model: SpecModule, observed: Observed) -> None:
    """Every layer: torch's output shape == static shape, torch's parameter count == static count
    (and its state_dict shapes == the static ones, where the kind declares them)."""
    static_shapes = {n.id: n.output_shape for n in graph.nodes}
    static_params = {n.id: n.params for n in graph.nodes}
    assert observed.shapes == static_shapes
    assert observed.params == static_params
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == graph.trainable_params
    assert tuple(observed.output.shape[1:]) == graph.output_shape
    for node in graph.nodes:  # the static state_dict shapes, where a kind knows them
        static = node.layer.tensors(node.input_shapes)
        if static is not None:
            built = {k: tuple(v.shape) for k, v in model.layer(node.id).state_dict().items()}
            assert built == static, node.id
