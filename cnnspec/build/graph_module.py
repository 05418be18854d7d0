"""Build a torch module that runs the checked layer graph."""

from __future__ import annotations

import torch
from torch import nn

from cnnspec.check.checker import check
from cnnspec.check.expand import INPUT
from cnnspec.check.graph import Graph
from cnnspec.spec.model import Spec


def _attach(root: nn.Module, dotted: str, module: nn.Module) -> None:
    """Register `module` at a dotted path, creating plain containers on the way (like torchvision's names)."""
    parent = root
    *parents, last = dotted.split(".")
    for part in parents:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    parent.add_module(last, module)


class SpecModule(nn.Module):
    """The network a spec describes: one submodule per layer, named by the layer's id.

    `forward` runs the nodes in graph order; each reads the outputs its `inputs` name.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self.spec_name = graph.spec.name
        self.input_shape = tuple(graph.input_shape)
        self.output_shape = tuple(graph.output_shape)
        self._order: list[tuple[str, tuple[str, ...]]] = []
        self._modules_by_id: dict[str, nn.Module] = {}
        consumers: dict[str, int] = {}
        for node in graph.nodes:
            module = node.layer.build(node.input_shapes)
            _attach(self, node.id, module)
            self._modules_by_id[node.id] = module
            self._order.append((node.id, node.inputs))
            for i in node.inputs:
                consumers[i] = consumers.get(i, 0) + 1
        self._output = graph.output
        # Free each intermediate once its last reader has run (keeps activation memory like nn.Sequential).
        last_use: dict[str, int] = {}
        for step, (_, inputs) in enumerate(self._order):
            for i in inputs:
                last_use[i] = step
        self._release = [
            tuple(i for i in inputs if last_use.get(i) == step and i != self._output) for step, (_, inputs) in enumerate(self._order)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        values: dict[str, torch.Tensor] = {INPUT: x}
        for step, (node_id, inputs) in enumerate(self._order):
            values[node_id] = self._modules_by_id[node_id](*(values[i] for i in inputs))
            for i in self._release[step]:
                del values[i]
        return values[self._output]

    def layer(self, node_id: str) -> nn.Module:
        """The module of the layer with this id."""
        return self._modules_by_id[node_id]


def build(spec_or_graph: Spec | Graph) -> SpecModule:
    """Build the torch module for a spec (checked first) or an already-checked graph."""
    graph = spec_or_graph if isinstance(spec_or_graph, Graph) else check(spec_or_graph)
    return SpecModule(graph)
