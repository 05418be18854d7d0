"""The summary table's rows, computed from a checked graph: one Row per layer and the totals
(cnnspec.render.summary renders them as text, JSON, Markdown or a plot).

`depth` collapses the rows below that many levels of dotted ids (`layer1.0.conv1` is at level 3)
into one row per id prefix, and shows a layer that has inner layers (a torchvision ResNet
backbone: LayerKind.inner_layers) through them, checked statically as a spec of their own.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from cnnspec.checker.data import data_notes
from cnnspec.checker.graph import Graph, Node
from cnnspec.checker.memory import BYTES_FP32, estimate
from cnnspec.layers.base import Shape


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
    memory: Memory  # counted as torchinfo counts, at a batch size
    depth: int | None = None  # the levels shown; None: every layer of the spec, a backbone as one row
    # What the spec does without writing it out (cnnspec.checker.data.data_notes): a default data.resize.
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Memory:
    """fp32 bytes as torchinfo's summary counts them (torchinfo/model_statistics.py): the input batch; the
    forward/backward pass, twice (output and gradient) the output of every layer that holds parameters;
    the parameters. A layer with inner layers (a ResNet backbone) is counted through them; `estimated`
    when one is not known layer by layer and only its own output is counted."""

    batch_size: int
    input_bytes: int
    forward_backward_bytes: int
    params_bytes: int
    total_bytes: int
    estimated: bool


def _square(pair: tuple[Any, Any]) -> Any:
    a, b = pair
    if isinstance(a, float):
        a, b = (int(a) if a.is_integer() else round(a, 4)), (int(b) if b.is_integer() else round(b, 4))
    return a if a == b else [a, b]


def _row(node: Node) -> Row:
    return Row(
        id=node.id,
        kind=node.kind,
        output_shape=list(node.output_shape),
        params=node.params,
        trainable=node.trainable_params == node.params,
        macs=node.macs,
        receptive_field=_square(node.receptive_field),
        stride=_square(node.stride),
        inputs=list(node.inputs),
    )


@functools.lru_cache(maxsize=32)
def _inner_graph(text: str, shape: Shape) -> Graph:
    """The inner layers (JSON text of a `model` section without `input`) checked on an input of `shape`."""
    from cnnspec.checker.checker import check
    from cnnspec.spec.load import loads

    c, h, w = shape
    model = {"input": {"channels": c, "height": h, "width": w}, **json.loads(text)}
    return check(loads(json.dumps({"name": "inner", "model": model}), file="<inner layers>"))


def inner_rows(graph: Graph, node: Node) -> list[Row] | None:
    """`node` layer by layer when its kind knows its inner layers: ids under the node's, receptive field
    and stride in the model's input pixels; None when it does not, or they do not fit its input."""
    from cnnspec.errors import CnnspecError

    inner = node.layer.inner_layers()
    if inner is None or len(node.input_shapes) != 1 or len(node.input_shapes[0]) != 3:
        return None
    try:
        sub = _inner_graph(json.dumps(inner, sort_keys=True), tuple(node.input_shapes[0]))
    except CnnspecError:
        return None
    before = graph.node(node.inputs[0]) if node.inputs[0] != "input" else None
    rf_in, jump_in = (before.receptive_field, before.stride) if before is not None else ((1, 1), (1.0, 1.0))
    trainable = node.layer.trainable()
    rows = []
    for n in sub.nodes:
        rf = tuple(round(rf_in[a] + (n.receptive_field[a] - 1) * jump_in[a]) for a in (0, 1))
        jump = tuple(jump_in[a] * n.stride[a] for a in (0, 1))
        rows.append(
            Row(
                id=f"{node.id}.{n.id}",
                kind=n.kind,
                output_shape=list(n.output_shape),
                params=n.params,
                trainable=trainable or n.params == 0,
                macs=n.macs,
                receptive_field=_square((rf[0], rf[1])),
                stride=_square((jump[0], jump[1])),
                inputs=[f"{node.id}.{i}" if i != "input" else node.inputs[0] for i in n.inputs],
            )
        )
    return rows


def _level(row_id: str) -> int:
    return row_id.count(".") + 1


def collapse(rows: list[Row], depth: int) -> list[Row]:
    """Rows below `depth` levels folded into one row per id prefix of `depth` levels (consecutive rows):
    the sum of their parameters and MACs, the last one's output, receptive field and stride."""
    out: list[Row] = []
    group: list[Row] = []

    def flush() -> None:
        if not group:
            return
        key = ".".join(group[0].id.split(".")[:depth])
        if len(group) == 1 and group[0].id == key:
            out.append(group[0])
        else:
            last = group[-1]
            out.append(
                Row(
                    id=key,
                    kind=f"{len(group)} layers",
                    output_shape=last.output_shape,
                    params=sum(r.params for r in group),
                    trainable=all(r.trainable for r in group),
                    macs=sum(r.macs for r in group),
                    receptive_field=last.receptive_field,
                    stride=last.stride,
                    inputs=group[0].inputs,
                )
            )
        group.clear()

    for r in rows:
        key = ".".join(r.id.split(".")[:depth])
        if group and ".".join(group[0].id.split(".")[:depth]) != key:
            flush()
        group.append(r)
    flush()
    return out


def torchinfo_memory(graph: Graph, batch_size: int) -> Memory:
    """The memory torchinfo's summary reports for the built model at `batch_size` (see Memory)."""
    outputs = 0
    estimated = False
    for node in graph.nodes:
        inner = inner_rows(graph, node) if node.layer.inner_layers() is not None else None
        if inner is None:
            estimated |= node.layer.macs_estimated  # a backbone known only by its table
            parts = [(node.params, node.output_shape)]
        else:
            parts = [(r.params, tuple(r.output_shape)) for r in inner]
        outputs += sum(math.prod(shape) for params, shape in parts if params > 0)
    input_bytes = BYTES_FP32 * batch_size * math.prod(graph.input_shape)
    forward_backward = 2 * BYTES_FP32 * batch_size * outputs
    params_bytes = BYTES_FP32 * graph.total_params
    total = input_bytes + forward_backward + params_bytes
    return Memory(batch_size, input_bytes, forward_backward, params_bytes, total, estimated)


def summarize(graph: Graph, depth: int | None = None, batch_size: int = 1) -> Summary:
    """The rows of `graph`: every layer (a backbone as one row), or with `depth` that many levels, layers
    with inner layers shown through them; memory as torchinfo counts it at `batch_size`."""
    memory = estimate(graph)
    rows: list[Row] = []
    estimated: list[str] = []
    for n in graph.nodes:
        inner = inner_rows(graph, n) if depth is not None and _level(n.id) < depth else None
        rows += inner if inner is not None else [_row(n)]
        if inner is None and n.layer.macs_estimated:
            estimated.append(n.id)
    if depth is not None:
        rows = collapse(rows, depth)
        shown = {r.id for r in rows}
        estimated = [i for i in estimated if i in shown]
    return Summary(
        name=graph.spec.name,
        input_shape=list(graph.input_shape),
        output_shape=list(graph.output_shape),
        total_params=graph.total_params,
        trainable_params=graph.trainable_params,
        macs=sum(r.macs for r in rows),
        layers=rows,
        estimated_macs=estimated,
        vars=dict(graph.spec.vars),
        weights_bytes=memory.weights,
        forward_backward_bytes=memory.forward_backward,
        notes=data_notes(graph.spec),
        memory=torchinfo_memory(graph, batch_size),
        depth=depth,
    )
