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
from cnnspec.errors import CnnspecError, Diagnostic, PluginError
from cnnspec.layers.base import fmt_shape
from cnnspec.spec.dispatch import is_builtin
from cnnspec.spec.model import Spec
from cnnspec.spec.paths import absolute_paths


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


class OwnTensors(nn.Module):
    """A layer with `id: self` as `SpecModule.layer` gives it: that layer's own tensors, without the list's.

    The layer's module sits in the model at the name of the list it is in and holds the list's other
    layers as its children (ConvNeXt's `features.1.0`, with `layer_scale` and `block`), so the module
    at that name is more than the layer. This one shares the owner's own parameter and buffer tables
    (the same dicts: what `.to()` or `load_state_dict` does to them shows here) but has no children,
    and runs the owner: parameters(), state_dict() and hooks are the layer's, forward is unchanged.
    """

    owner: nn.Module

    def __init__(self, owner: nn.Module):
        super().__init__()
        self.__dict__["owner"] = owner  # not a child: the owner is in the model under the list's name
        self.__dict__["_parameters"] = owner._parameters
        self.__dict__["_buffers"] = owner._buffers
        self.__dict__["_non_persistent_buffers_set"] = owner._non_persistent_buffers_set

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.owner(*xs)


def _build_node(node: Node) -> nn.Module:
    """The node's torch module; errors the layer's builder raises are pointed at the node's YAML."""
    try:
        return node.layer.build(node.input_shapes)
    except CnnspecError as exc:
        located = [d if d.location else dataclasses.replace(d, location=node.location) for d in exc.diagnostics]
        raise type(exc)(located) from None


def _plugin_faults(node: Node, module: object) -> list[Diagnostic]:
    """Where a plugin kind's module disagrees with the figures its rules gave the checker.

    A plugin's `params` and shape rule are its author's word; the summary, the checker's later layers
    and the export's metadata all rest on them, so the built module is held to them: an nn.Module,
    the parameter count, and the output shape of one forward pass (batch 2, eval mode, no gradients).
    cnnspec's own kinds are not run here: tests prove their modules equal their rules.
    """
    from cnnspec.layers.plugins import origin

    who = f"layer kind '{node.kind}' ({origin(type(node.layer))})"

    def fault(what: str) -> Diagnostic:
        notes = (f"in layer '{node.id}'",) if "." in node.id else ()
        return Diagnostic(
            f"{who} {what}",
            node.location,
            notes,
            "this is a fault in the kind's rules or builder, not in the spec: report it to the kind's author",
        )

    if not isinstance(module, nn.Module):
        return [fault(f"built {type(module).__name__!r}, not a torch.nn.Module")]
    out: list[Diagnostic] = []
    built = sum(p.numel() for p in module.parameters())
    if built != node.params:
        out.append(fault(f"built a module with {built:,} parameters, but its rules count {node.params:,}"))
    shapes = " and ".join(fmt_shape(s) for s in node.input_shapes)
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            y = module(*(torch.zeros((2, *s)) for s in node.input_shapes))
    except Exception as exc:  # a plugin's forward may raise anything
        first = (str(exc).strip().splitlines() or [""])[0]
        batch = " and ".join(f"2×{fmt_shape(s)}" for s in node.input_shapes)
        return [*out, fault(f"built a module that fails on an input of {batch} (zeros): {type(exc).__name__}: {first}")]
    finally:
        module.train(was_training)
    if not isinstance(y, torch.Tensor):
        return [*out, fault(f"built a module that returns {type(y).__name__!r}, not a tensor")]
    got = tuple(y.shape[1:])
    if got != tuple(node.output_shape):
        out.append(
            fault(
                f"built a module whose output is {fmt_shape(got) or 'a scalar'} for an input of {shapes}, "
                f"but its shape rule gives {fmt_shape(node.output_shape)}"
            )
        )
    return out


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
        faults: list[Diagnostic] = []
        for node in graph.nodes:
            module = _build_node(node)
            if not is_builtin(type(node.layer)):
                found = _plugin_faults(node, module)
                faults += found
                if found:
                    continue  # reported; the other plugin layers are still checked
            _attach(self, node, module)
            self._modules_by_id[node.id] = module
            self._order.append((node.id, node.inputs))
        if faults:
            raise PluginError(faults)
        # A layer whose module also holds other layers (`id: self`): `layer(id)` and forward use its own part.
        hosts = {node_id.rsplit(".", 1)[0] for node_id in self._modules_by_id if "." in node_id}
        for node_id in hosts & set(self._modules_by_id):
            self._modules_by_id[node_id] = OwnTensors(self._modules_by_id[node_id])
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
        """The module of the layer with this (full, dotted) id: that layer alone, its parameters the
        checker's count. For a layer with `id: self` (a `scale` that is its list's own γ) it is an
        `OwnTensors` view; `get_submodule(node_id)` gives the list's module with its other layers."""
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
    graph = spec_or_graph if isinstance(spec_or_graph, Graph) else check(absolute_paths(spec_or_graph))
    if absolute_paths(graph.spec) is not graph.spec:  # a layer's weights file, relative to the spec's folder
        graph = check(absolute_paths(graph.spec))
    model = SpecModule(graph)
    path = weights_file(graph.spec) if pretrained else None
    if path is not None:
        load_pretrained(model, path, graph.spec.source.locate(("model", "weights")))
    return model
