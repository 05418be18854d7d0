"""Build a torch module that runs the checked layer graph."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from cnnspec.builder.weights import load_pretrained
from cnnspec.checker.checker import check
from cnnspec.checker.expand import INPUT
from cnnspec.checker.graph import Graph, Node
from cnnspec.checker.weights import weights_file
from cnnspec.errors import CnnspecError
from cnnspec.spec.model import Spec


def _attach(root: nn.Module, node: Node, module: nn.Module) -> None:
    """Register `module` at the node's dotted id, creating plain containers on the way (like torchvision's names).

    The parts are walked by position, so a part may repeat an earlier one (`features.1.0.block.0.0`).
    The checker has refused ids that torch modules use as attributes and layers nested in layers, except
    a layer with `id: self`: it is the module of the list it is in, so it takes over the plain container
    built there for the list's other layers (whichever comes first), and its tensors sit beside them
    (ConvNeXt's `features.1.0.layer_scale` next to `features.1.0.block`).
    """
    *parents, last = node.id.split(".")
    parent = root
    for part in parents:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    existing = parent._modules.get(last)
    if existing is not None:
        if type(existing) is not nn.Module:
            # Replacing a child would drop its parameters from the model while forward still ran it.
            raise RuntimeError(f"cnnspec bug: layer '{node.id}' would replace a module already built at that name")
        for name, child in existing._modules.items():  # the list's layers built so far move into the layer
            module.add_module(name, child)
    parent.add_module(last, module)


def _build_node(node: Node) -> nn.Module:
    """The node's torch module; errors the layer's builder raises are pointed at the node's YAML."""
    try:
        return node.layer.build(node.input_shapes)
    except CnnspecError as exc:
        located = [d if d.location else dataclasses.replace(d, location=node.location) for d in exc.diagnostics]
        raise type(exc)(located) from None


class SpecModule(nn.Module):
    """The network a spec describes: one submodule per layer, named by the layer's id.

    `forward` runs the nodes in graph order; each reads the outputs its `inputs` name.
    Ids from sugar are dotted (`layer2.0.conv1`), so state_dict keys trace back to the YAML.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self.spec_name = graph.spec.name
        self.input_shape = tuple(graph.input_shape)
        self.output_shape = tuple(graph.output_shape)
        self._order: list[tuple[str, tuple[str, ...]]] = []
        self._modules_by_id: dict[str, nn.Module] = {}
        for node in graph.nodes:
            module = _build_node(node)
            _attach(self, node, module)
            self._modules_by_id[node.id] = module
            self._order.append((node.id, node.inputs))
        self._output = graph.output
        # Free each intermediate once its last reader has run (keeps activation memory like nn.Sequential).
        last_use: dict[str, int] = {}
        for step, (_, inputs) in enumerate(self._order):
            for i in inputs:
                last_use[i] = step
        self._release = [
            tuple(i for i in set(inputs) if last_use.get(i) == step and i != self._output)
            for step, (_, inputs) in enumerate(self._order)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        values: dict[str, torch.Tensor] = {INPUT: x}
        for step, (node_id, inputs) in enumerate(self._order):
            values[node_id] = self._modules_by_id[node_id](*(values[i] for i in inputs))
            for i in self._release[step]:
                del values[i]
        return values[self._output]

    def layer(self, node_id: str) -> nn.Module:
        """The module of the layer with this (full, dotted) id."""
        return self._modules_by_id[node_id]

    def layer_ids(self) -> list[str]:
        """Every layer's id, in execution order."""
        return [node_id for node_id, _ in self._order]


def build(spec_or_graph: Spec | Graph, *, pretrained: bool = True) -> SpecModule:
    """Build the torch module for a spec (checked first) or an already-checked graph.

    When the spec names `model.weights`, that state_dict file is loaded strictly (its keys and
    shapes must equal the model's); `pretrained=False` skips it, for callers that load a
    checkpoint of their own right after (a run directory's trained weights).

    Raises ShapeError when the spec does not check, SpecError or CheckpointError when a
    layer cannot be built (e.g. torchvision weights that cannot be loaded) or the weights do not fit.
    """
    graph = spec_or_graph if isinstance(spec_or_graph, Graph) else check(spec_or_graph)
    model = SpecModule(graph)
    path = weights_file(graph.spec) if pretrained else None
    if path is not None:
        load_pretrained(model, path, graph.spec.source.locate(("model", "weights")))
    return model
