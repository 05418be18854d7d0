"""The summary table's rows, computed from a checked graph: one Row per layer and the totals
(cnnspec.render.summary renders them as text, JSON, Markdown or a plot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnspec.checker.data import data_notes
from cnnspec.checker.graph import Graph
from cnnspec.checker.memory import estimate


@dataclass(frozen=True)
class Row:
    id: str
    kind: str
    output_shape: list[int]
    params: int
    trainable: bool
    macs: int
    receptive_field: int | list[int]  # one number when square, else [H, W]
    stride: float | list[float]  # effective stride (jump) in input pixels
    inputs: list[str]


@dataclass(frozen=True)
class Summary:
    name: str
    input_shape: list[int]
    output_shape: list[int]
    total_params: int
    trainable_params: int
    macs: int
    layers: list[Row]
    # Ids of the layers whose MACs are estimates (a torchvision backbone's figure scaled from
    # 224×224); the total is then an estimate too.
    estimated_macs: list[str]
    vars: dict[str, int | float]  # the spec's vars after --set: the values the rows were computed with
    # fp32 estimates (cnnspec.checker.memory), like torchinfo's "Params size" and "Forward/backward pass size".
    weights_bytes: int
    forward_backward_bytes: int  # per image: every layer's output and its gradient
    # What the spec does without writing it out (cnnspec.checker.data.data_notes): a default data.resize.
    notes: list[str] = field(default_factory=list)


def _square(pair: tuple[Any, Any]) -> Any:
    a, b = pair
    if isinstance(a, float):
        a, b = (int(a) if a.is_integer() else round(a, 4)), (int(b) if b.is_integer() else round(b, 4))
    return a if a == b else [a, b]


def summarize(graph: Graph) -> Summary:
    memory = estimate(graph)
    rows = [
        Row(
            id=n.id,
            kind=n.kind,
            output_shape=list(n.output_shape),
            params=n.params,
            trainable=n.trainable_params == n.params,
            macs=n.macs,
            receptive_field=_square(n.receptive_field),
            stride=_square(n.stride),
            inputs=list(n.inputs),
        )
        for n in graph.nodes
    ]
    return Summary(
        name=graph.spec.name,
        input_shape=list(graph.input_shape),
        output_shape=list(graph.output_shape),
        total_params=graph.total_params,
        trainable_params=graph.trainable_params,
        macs=graph.macs,
        layers=rows,
        estimated_macs=[n.id for n in graph.nodes if n.layer.macs_estimated],
        vars=dict(graph.spec.vars),
        weights_bytes=memory.weights,
        forward_backward_bytes=memory.forward_backward,
        notes=data_notes(graph.spec),
    )
