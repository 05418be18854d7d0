"""The static checker: shapes, parameter and MAC counts, receptive field; no torch."""

from __future__ import annotations

from collections.abc import Mapping
from graphlib import CycleError, TopologicalSorter

from cnnspec.checker.data import batch_statistics, check_data
from cnnspec.checker.expand import INPUT, Expander, RawNode
from cnnspec.checker.graph import Graph, Node
from cnnspec.checker.memory import check_memory
from cnnspec.errors import Diagnostic, ShapeError
from cnnspec.layers import Shape, ShapeProblem
from cnnspec.layers.base import fmt_shape
from cnnspec.spec.model import Spec


def check(spec: Spec) -> Graph:
    """Check every shape of `spec`; raises ShapeError listing every problem."""
    graph, diagnostics = analyse(spec)
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        raise ShapeError(errors)
    return graph


def analyse(spec: Spec) -> tuple[Graph, list[Diagnostic]]:
    """Check `spec` and return the graph (as far as it could be built) and every diagnostic."""
    expander = Expander(spec)
    output = expander.resolve_all(expander.run())
    diagnostics = expander.diagnostics
    raw = expander.nodes
    graph = Graph(spec, spec.model.input.shape, output=output)

    order = _written_order(raw)
    if order is None:  # some layer reads one written after it: sort (and find cycles)
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for node in raw.values():
            sorter.add(node.id, *(i for i in node.inputs if i != INPUT))
        try:
            order = [n for n in sorter.static_order() if n in raw]
        except CycleError as exc:
            cycle = exc.args[1]
            first = raw[cycle[0]]
            diagnostics.append(
                Diagnostic(
                    f"the layers form a cycle: {' → '.join(cycle)}",
                    spec.source.locate(first.path),
                    hint="a layer can only read layers that do not read it back",
                )
            )
            return graph, diagnostics + check_data(spec)

    shapes: dict[str, Shape] = {INPUT: spec.model.input.shape}
    fields: dict[str, tuple[tuple[int, int], tuple[float, float]]] = {INPUT: ((1, 1), (1.0, 1.0))}
    built: dict[str, Node] = {}
    for node_id in order:
        node = raw[node_id]
        if any(i not in shapes for i in node.inputs):
            continue  # an input already failed; its error is reported
        ins = tuple(shapes[i] for i in node.inputs)
        layer = node.layer
        try:
            out = layer.output_shape(ins)
            params = layer.params(ins)
            macs = layer.macs(ins, out)
            window = layer.window(ins, out)
        except ShapeProblem as problem:
            path = node.path + ((problem.field,) if problem.field else ())
            notes = problem.notes + tuple(
                f"{i} is {fmt_shape(shapes[i])}" for i in node.inputs if i != INPUT and len(node.inputs) > 1
            )
            notes += tuple(f"in a block used at {t}" for t in reversed(node.trace))
            if "." in node.id:  # expanded from sugar: the location alone does not say which layer
                notes = (f"in layer '{node.id}'", *notes)
            diagnostics.append(
                Diagnostic(
                    problem.message,
                    spec.source.locate(path, key=False),
                    notes=notes,
                    hint=problem.hint,
                )
            )
            continue
        except Exception as exc:  # a kind's own rules failing (a plugin's, say): located, never a traceback
            from cnnspec.layers.plugins import origin

            diagnostics.append(
                Diagnostic(
                    f"layer kind '{layer.kind}' ({origin(type(layer))}) failed to compute its shape or counts: "
                    f"{type(exc).__name__}: {exc}",
                    spec.source.locate(node.path, key=False),
                    notes=(f"in layer '{node.id}'",) if "." in node.id else (),
                    hint="this is a fault in the kind's rules, not in the spec: report it to the kind's author",
                )
            )
            continue
        seen = node.inputs[: layer.value_inputs]  # the inputs whose pixels reach the output
        rf_in = tuple(max(fields[i][0][a] for i in seen) for a in (0, 1))
        jump_in = tuple(min(fields[i][1][a] for i in seen) for a in (0, 1))
        main = ins[0]
        kernel = (main[1], main[2]) if window.global_ and len(main) == 3 else window.kernel
        rf = tuple(round(rf_in[a] + (kernel[a] - 1) * jump_in[a]) for a in (0, 1))
        jump = tuple(jump_in[a] * window.stride[a] for a in (0, 1))
        fields[node_id] = ((rf[0], rf[1]), (jump[0], jump[1]))
        shapes[node_id] = out
        built[node_id] = Node(
            id=node_id,
            layer=layer,
            inputs=tuple(node.inputs),
            input_shapes=ins,
            output_shape=out,
            params=params,
            trainable_params=params if layer.trainable() else 0,
            macs=macs,
            receptive_field=(rf[0], rf[1]),
            stride=(jump[0], jump[1]),
            location=spec.source.locate(node.path),
        )
    # Keep the order the user wrote where the graph allows it.
    graph.nodes = (
        [built[n] for n in raw if n in built]
        if _declared_order_ok(raw, built)
        else [built[n] for n in order if n in built]
    )
    diagnostics += _unused(raw, output, spec)
    diagnostics += check_data(spec)
    if spec.data is not None:
        diagnostics += batch_statistics(graph, spec.data.batch_size, ("data", "batch_size"))
    diagnostics += check_memory(spec, graph)
    return graph, diagnostics


def _written_order(raw: Mapping[str, RawNode]) -> list[str] | None:
    """The layers as written, when every layer reads only layers written before it (the usual case)."""
    seen = {INPUT}
    for node_id, node in raw.items():
        for i in node.inputs:
            if i not in seen and i in raw:
                return None
        seen.add(node_id)
    return list(raw)


def _declared_order_ok(raw: Mapping[str, object], built: dict[str, Node]) -> bool:
    seen = {INPUT}
    for node_id in raw:
        if node_id not in built:
            continue
        if any(i not in seen for i in built[node_id].inputs):
            return False
        seen.add(node_id)
    return True


def _unused(raw: Mapping[str, RawNode], output: str, spec: Spec) -> list[Diagnostic]:
    used = {i for node in raw.values() for i in node.inputs} | {output}
    out = []
    for node_id, node in raw.items():
        if node_id not in used:
            out.append(
                Diagnostic(
                    f"the output of '{node_id}' is never used",
                    spec.source.locate(node.path),
                    hint="remove it, or list it in a later layer's inputs",
                    severity="warning",
                )
            )
    return out
