"""Refuse ONNX graphs with control flow: cnnspec never exports it, and onnxruntime runs it unbounded.

A `Loop` node's trip count and condition are tensors: a file can ask for 2^62 iterations (or a
condition that stays true) and `predict` or `bench` would spin for ever, deaf to Ctrl-C while
onnxruntime holds the thread. `Scan`, `If` and `SequenceMap` run subgraphs too, and so does
every node with a graph attribute in another domain (onnxruntime's BeamSearch, GreedySearch, …).
The models `cnnspec export` writes are plain feed-forward image classifiers: every spec in
`specs/` and `specs/zoo/`, every torchvision backbone and every layer kind exports without one
(docs/export.md, "Models from elsewhere"). So a file with any of them is refused on its protobuf
alone, before an onnxruntime session exists; the session guard (`session.py`) still makes any
long run stoppable with Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cnnspec.errors import ExportError
from cnnspec.terminal import printable

if TYPE_CHECKING:
    import onnx

# The standard operators that run a subgraph (ONNX's "control flow" and sequence ops with a body).
CONTROL_FLOW_OPS = frozenset({"Loop", "Scan", "If", "SequenceMap"})
_STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
_NAME_SHOWN = 80  # characters of a node name in the message


def _has_subgraph(node: onnx.NodeProto) -> bool:
    return any(attr.HasField("g") or len(attr.graphs) > 0 for attr in node.attribute)


def _is_control_flow(node: onnx.NodeProto) -> bool:
    return (node.domain in _STANDARD_DOMAINS and node.op_type in CONTROL_FLOW_OPS) or _has_subgraph(node)


def control_flow_nodes(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.NodeProto]]:
    """(where, node) for every control-flow node of the main graph and of the model's local functions.

    The subgraphs themselves are not searched: the node that holds one is already refused."""
    groups = [("the graph", model.graph.node), *((f"function '{f.name}'", f.node) for f in model.functions)]
    for where, nodes in groups:
        for node in nodes:
            if _is_control_flow(node):
                yield where, node


def _describe(node: onnx.NodeProto) -> str:
    kind = f"{node.domain}.{node.op_type}" if node.domain not in _STANDARD_DOMAINS else node.op_type
    name = node.name if len(node.name) <= _NAME_SHOWN else node.name[: _NAME_SHOWN - 3] + "..."
    article = "an" if kind[:1] in "AEIOUaeiou" else "a"
    return f"{article} {printable(kind)} node ({printable(repr(name)) if name else 'unnamed'})"


def check_no_control_flow(model: onnx.ModelProto, path: str | Path) -> None:
    """ExportError naming the first control-flow node of `model` (the file at `path`), if it has one."""
    for where, node in control_flow_nodes(model):
        place = "" if where == "the graph" else f" in {printable(where)}"
        raise ExportError(
            f"{path} contains {_describe(node)}{place}; cnnspec runs image classifiers without control flow",
            hint="predict and bench run files written by `cnnspec export`, which hold no Loop, Scan or If "
            "(a loop's trip count is read from the file and has no bound); run this one with onnxruntime yourself",
        )
