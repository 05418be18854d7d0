"""The statically known shape of every layer's output, written into the exported graph's `value_info`.

ONNX viewers (Netron) show a tensor's shape only when the file stores it. The TorchScript exporter
stores none; the dynamo exporter stores its own. cnnspec knows each layer's output shape from the
checker, so export writes it for the tensor that carries that layer's output, with the batch axis of
the graph's input (`batch`, or 1 without a dynamic batch), and names the layer in the entry's
doc_string.

Which ONNX node belongs to which layer:
- dynamo: each node's `pkg.torch.onnx.name_scopes` metadata, whose second entry is the qualified name
  of the layer's module, which is the layer id (cnnspec/builder attaches each layer at its id);
- TorchScript (the fallback): node names are scope paths (`/downsample/downsample.0/Conv`) of module
  *attribute* names, which repeat between blocks, so the nodes are matched in order instead (the
  exporter emits them in execution order, the graph's order), by name and output shape (`_in_order`).
  Best effort: a layer it cannot place gets no entry.

A layer's output tensor is the one output of its nodes that a node of another layer (or the graph
output) reads; a layer with no node of its own (an identity, a dropout in eval mode, a convolution
whose batch norm was folded into it) has none, its output being another layer's tensor.

Each shape is checked against ONNX's own shape inference (`onnx.shape_inference`, on the graph
without value_info): one that inference contradicts is not written and is reported, one it cannot
infer is written.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import onnx
from onnx import helper

from cnnspec.checker.graph import Graph, Node
from cnnspec.layers.base import fmt_shape

SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass
class Annotated:
    """What `annotate` wrote: tensor name → layer id, and the layers whose shape inference disagreed."""

    tensors: dict[str, str] = field(default_factory=dict)
    disagreed: list[str] = field(default_factory=list)  # one line per tensor left out


def _scopes(node: onnx.NodeProto) -> list[str] | None:
    for prop in node.metadata_props:
        if prop.key == SCOPES:
            try:
                value = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return [str(v) for v in value] if isinstance(value, list) else None
    return None


def layer_of_nodes(model: onnx.ModelProto, graph: Graph) -> dict[int, str]:
    """ONNX node index → the layer id it computes, for the nodes that belong to a layer."""
    ids = {n.id for n in graph.nodes}
    found: dict[int, str] = {}
    ordered: list[tuple[int, str]] = []
    for index, node in enumerate(model.graph.node):
        scopes = _scopes(node)
        if scopes is not None:
            layer = next((s for s in scopes[1:] if s in ids), None)
            if layer is not None:
                found[index] = layer
        elif node.name.startswith("/") and node.name.count("/") >= 2:
            ordered.append((index, node.name.split("/")[1]))
    if ordered:
        found |= _in_order(model, graph, ordered)
    return found


def _in_order(model: onnx.ModelProto, graph: Graph, ordered: list[tuple[int, str]]) -> dict[int, str]:
    """The TorchScript exporter's nodes matched to layers in execution order: a node belongs to the next
    layer whose last id part is its scope (which the exporter may have suffixed `_N` to keep names
    apart), preferring one whose output shape is the node's (a layer with no node of its own, such as
    an identity shortcut, would otherwise take the next block's node of the same name)."""
    inferred = inferred_shapes(model)
    tails = [n.id.rsplit(".", 1)[-1] for n in graph.nodes]
    found: dict[int, str] = {}
    at = 0
    for index, scope in ordered:
        names = {scope}
        head, _, number = scope.rpartition("_")
        if head and number.isdigit():
            names.add(head)
        candidates = [j for j in range(at, len(tails)) if tails[j] in names]
        if not candidates:
            continue
        outputs = [inferred.get(o) for o in model.graph.node[index].output]
        shaped = [
            j
            for j in candidates
            if any(o is not None and list(o[1:]) == list(graph.nodes[j].output_shape) for o in outputs)
        ]
        at = (shaped or candidates)[0]
        found[index] = graph.nodes[at].id
    return found


def layer_outputs(model: onnx.ModelProto, graph: Graph) -> dict[str, Node]:
    """Tensor name → the layer whose output it is (graph inputs and outputs left out: their type is declared)."""
    owner = layer_of_nodes(model, graph)
    produced_by: dict[str, str] = {}
    for index, node in enumerate(model.graph.node):
        if index in owner:
            for name in node.output:
                if name:
                    produced_by[name] = owner[index]
    leaving: dict[str, set[str]] = {}
    for index, node in enumerate(model.graph.node):
        for name in node.input:
            layer = produced_by.get(name)
            if layer is not None and owner.get(index) != layer:
                leaving.setdefault(layer, set()).add(name)
    declared = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    for out in model.graph.output:
        layer = produced_by.get(out.name)
        if layer is not None:
            leaving.setdefault(layer, set()).add(out.name)
    result: dict[str, Node] = {}
    for layer, names in leaving.items():
        if len(names) == 1:
            (name,) = names
            if name not in declared:
                result[name] = graph.node(layer)
    return result


def _dims(value: onnx.ValueInfoProto) -> list[int | str] | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]


def inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int | str] | None]:
    """What ONNX's shape inference finds for every intermediate tensor, from the graph alone (no value_info)."""
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(bare, data_prop=True)
    return {v.name: _dims(v) for v in inferred.graph.value_info}


def _agrees(ours: list[int | str], theirs: list[int | str] | None) -> bool:
    if theirs is None:
        return True
    if len(ours) != len(theirs):
        return False
    batch_ok = isinstance(theirs[0], str) or theirs[0] == ours[0] or isinstance(ours[0], str)
    return batch_ok and list(ours[1:]) == list(theirs[1:])


def annotate(model: onnx.ModelProto, graph: Graph) -> Annotated:
    """Write each layer's static output shape into `model.graph.value_info`, in place."""
    entry = model.graph.input[0].type.tensor_type
    batch = entry.shape.dim[0]
    batch_dim: int | str = batch.dim_value if batch.HasField("dim_value") else (batch.dim_param or "batch")
    elem = entry.elem_type
    inferred = inferred_shapes(model)
    report = Annotated()
    values: dict[str, onnx.ValueInfoProto] = {}
    for name, node in layer_outputs(model, graph).items():
        dims = [batch_dim, *node.output_shape]
        if not _agrees(dims, inferred.get(name)):
            said = inferred.get(name)
            report.disagreed.append(
                f"layer '{node.id}': cnnspec's shape {fmt_shape(node.output_shape)}, ONNX infers "
                f"{'×'.join(map(str, said[1:])) if said else '?'} for {name}"
            )
            continue
        values[name] = helper.make_tensor_value_info(
            name, elem, dims, doc_string=f"output of layer {node.id} ({node.kind})"
        )
        report.tensors[name] = node.id
    kept = [v for v in model.graph.value_info if v.name not in values]
    del model.graph.value_info[:]
    model.graph.value_info.extend([*kept, *values.values()])
    return report
