"""The checked graph: every node with its shapes, counts and receptive field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cnnspec.errors import Location
from cnnspec.layers import LayerKind, Shape
from cnnspec.spec.dispatch import is_builtin

if TYPE_CHECKING:
    from cnnspec.spec.model import Spec


@dataclass(frozen=True)
class Node:
    """One primitive layer of the checked graph."""

    id: str
    layer: LayerKind
    inputs: tuple[str, ...]  # node ids, or "input"
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    params: int
    trainable_params: int
    macs: int
    receptive_field: tuple[int, int]  # (H, W) pixels of the input that one output sees
    stride: tuple[float, float]  # effective stride (jump) relative to the input, (H, W)
    location: Location

    @property
    def kind(self) -> str:
        return self.layer.kind


@dataclass
class Graph:
    """A spec whose shapes all fit; nodes are in an order where inputs come first."""

    spec: Spec
    input_shape: Shape
    nodes: list[Node] = field(default_factory=list)
    output: str = "input"

    @property
    def output_shape(self) -> Shape:
        return self.node(self.output).output_shape if self.nodes else self.input_shape

    @property
    def total_params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def trainable_params(self) -> int:
        return sum(n.trainable_params for n in self.nodes)

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def has_plugin_layers(self) -> bool:
        """Whether a layer's kind comes from a plugin, whose code cnnspec has not seen (its layout needs)."""
        return any(not is_builtin(type(n.layer)) for n in self.nodes)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)
