"""The static checker: shapes, parameter and MAC counts, receptive field; no torch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

from cnnspec.checker.data import batch_statistics, check_data, class_problems
from cnnspec.checker.expand import INPUT, Expander, RawNode
from cnnspec.checker.graph import Graph, Node
from cnnspec.checker.memory import check_memory
from cnnspec.errors import Diagnostic, error_for, in_category
from cnnspec.layers import Shape, ShapeProblem, Window
from cnnspec.layers.base import fmt_shape
from cnnspec.spec.model import Spec


def check(spec: Spec) -> Graph:
    """Check every shape of `spec`; raises an error listing every problem.

    Its class is the first problem's (`error_for`): SpecError for a reference to nothing or a block's
    layers the schema refuses, ShapeError for shapes and how layers are named and connected, DataError
    for the data section and the memory limit. Each diagnostic carries its own category."""
    graph, diagnostics = analyse(spec)
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        raise error_for(errors)
    return graph


def analyse(spec: Spec, *, locate_overrides: bool = True) -> tuple[Graph, list[Diagnostic]]:
    """Check `spec` and return the graph (as far as it could be built) and every diagnostic.

    A problem that a `--set` brought is located at that `--set` (`caused_by_overrides`; not when
    `locate_overrides` is False, as for the specs that finds it with)."""
    graph, found = _analyse(spec)
    if locate_overrides and found and getattr(spec.source, "applied", None):
        from cnnspec.spec.overrides import caused_by_overrides  # only with overrides and problems

        found = caused_by_overrides(spec, found, lambda fewer: _analyse(fewer)[1])
    return graph, found


def _analyse(spec: Spec) -> tuple[Graph, list[Diagnostic]]:
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
                    category="graph",
                )
            )
            return graph, diagnostics + in_category("data", check_data(spec))

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
            notes = problem.notes + tuple(  # each input once, however often it is read
                f"{i} is {fmt_shape(shapes[i])}"
                for i in dict.fromkeys(node.inputs)
                if i != INPUT and len(node.inputs) > 1
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
                    category="shape",
                )
            )
            continue
        except Exception as exc:  # a kind's own rules failing (a plugin's, say): located, never a traceback
            diagnostics.append(
                _rule_fault(spec, node, f"failed to compute its shape or counts: {type(exc).__name__}: {exc}")
            )
            continue
        # A kind's rules are code (a plugin's, say): figures no tensor can have are its fault, said here
        # rather than as a traceback (or a wrong summary) further on.
        fault = _impossible(out, params, macs, window)
        if fault is not None:
            diagnostics.append(_rule_fault(spec, node, fault))
            continue
        out = tuple(out)
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
    diagnostics += _unused(raw, output, spec, expander.involved, diagnostics)
    diagnostics += in_category("data", check_data(spec))
    if spec.data is not None:
        diagnostics += in_category("data", batch_statistics(graph, spec.data.batch_size, ("data", "batch_size")))
        if not any(d.severity == "error" for d in diagnostics):  # the output shape is known
            diagnostics += in_category("shape", class_problems(graph))
    diagnostics += in_category("memory", check_memory(spec, graph))
    return graph, diagnostics


_RULE_FAULT_HINT = "this is a fault in the kind's rules, not in the spec: report it to the kind's author"


def _rule_fault(spec: Spec, node: RawNode, what: str) -> Diagnostic:
    """A located error for a layer kind whose rules failed or gave impossible figures, naming where it comes from."""
    from cnnspec.layers.plugins import origin

    layer = node.layer
    return Diagnostic(
        f"layer kind '{layer.kind}' ({origin(type(layer))}) {what}",
        spec.source.locate(node.path, key=False),
        notes=(f"in layer '{node.id}'",) if "." in node.id else (),
        hint=_RULE_FAULT_HINT,
        category="shape",
    )


def _whole(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _impossible(out: object, params: object, macs: object, window: object) -> str | None:
    """What is wrong with a kind's figures for one layer, or None: an output shape is C×H×W or F of whole
    numbers ≥ 1, counts are whole numbers ≥ 0, a window has kernel sides ≥ 1 and strides > 0."""
    if not (isinstance(out, tuple | list) and len(out) in (1, 3) and all(_whole(d, 1) for d in out)):
        return f"gave the output shape {out!r}: a shape is C×H×W or F, of whole numbers ≥ 1"
    for what, count in (("parameters", params), ("multiply-accumulates", macs)):
        if not _whole(count, 0):
            return f"counted {count!r} {what}: a count is a whole number ≥ 0"
    if not isinstance(window, Window):
        return f"gave the receptive-field step {window!r}, not a Window"
    kernel_ok = all(_whole(k, 1) for k in window.kernel)
    stride_ok = all(
        isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in window.stride
    )
    if not (len(window.kernel) == 2 and len(window.stride) == 2 and kernel_ok and stride_ok):
        return f"gave the receptive-field step {window!r}: kernel sides are whole numbers ≥ 1, strides above 0"
    return None


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


def _unused(
    raw: Mapping[str, RawNode], output: str, spec: Spec, involved: set[str], found: Sequence[Diagnostic]
) -> list[Diagnostic]:
    """Warnings for layers nothing reads, but for those an error is about (`involved`, or located where
    an error is): a layer whose reader failed to be made is "unused" only because of that error."""
    used = {i for node in raw.values() for i in node.inputs} | {output}
    errors_at = {d.location for d in found if d.severity == "error"}
    out = []
    for node_id, node in raw.items():
        if node_id in involved or spec.source.locate(node.path) in errors_at:
            continue
        if node_id not in used:
            out.append(
                Diagnostic(
                    f"the output of '{node_id}' is never used",
                    spec.source.locate(node.path),
                    hint="remove it, or list it in a later layer's inputs",
                    severity="warning",
                    category="graph",
                )
            )
    return out
