"""Property test: valid random specs build into torch modules whose every layer agrees with the checker.

The specs come from tests/check/random_specs.py (see there for the domain); torch's verdict
comes from the independent interpreter there, not from cnnspec's builders.
"""

from __future__ import annotations

from hypothesis import event, given, note
from hypothesis import strategies as st

import cnnspec
from tests.build._build_helpers import assert_agrees, run_with_hooks
from tests.check.random_specs import PROFILE, Ids, Layer, head, lower, segment, small, spec_text, torch_verdict, with_id


@st.composite
def valid_spec(draw: st.DrawFn) -> tuple[tuple[int, int, int], list[Layer]]:
    shape = (draw(small(1, 6)), draw(small(4, 14)), draw(small(4, 14)))
    ids, layers = Ids(), []
    x_shape = shape
    wanted, kept = draw(small(1, 5)), 0
    for _ in range(2 * wanted):
        if kept == wanted:
            break
        candidate = lower(draw(segment(auto_shortcut=True)), ids)
        result = torch_verdict(x_shape, candidate)
        if isinstance(result, Exception):
            continue  # torch cannot run it: leave it out
        kept += 1
        layers += candidate  # its first layer reads the previous one, as it did when probed
        x_shape = tuple(result[0].shape[1:])  # type: ignore[assignment]
    if not layers:
        layers = [{"identity": {"id": ids.new()}}]
    for layer in draw(head):
        layers.append(with_id(layer, ids.new()))
    return shape, layers


@PROFILE
@given(valid_spec())
def test_valid_specs_agree_with_torch_layer_by_layer(case: tuple[tuple[int, int, int], list[Layer]]) -> None:
    shape, layers = case
    text = spec_text(shape, layers)
    note(text)
    graph = cnnspec.check(cnnspec.loads(text, "random.yaml"))  # must not raise: torch runs every layer
    event(f"{len(graph.nodes) // 5 * 5}+ layers")
    event("has a residual" if any(n.id.endswith(".add") for n in graph.nodes) else "no residual")
    event("has a branch" if any(n.kind in ("add", "concat") and "." not in n.id for n in graph.nodes) else "no branch")
    model = cnnspec.build(graph)
    observed = run_with_hooks(graph, model)
    assert_agrees(graph, model, observed)
    reference = torch_verdict(shape, layers)
    assert not isinstance(reference, Exception)
    out, params = reference
    assert tuple(out.shape[1:]) == graph.output_shape
    assert params == graph.total_params


# --- any spec: rejected by the checker exactly when torch fails ---------------------------------


# --- the same specs with their numbers written as expressions ----------------------------------

_NOT_NUMBERS = {"id", "inputs", "name"}  # ids may be whole numbers too, but they are names


def _as_expression(value: int, draw: st.DrawFn) -> str:
    """`value` as an expression that evaluates to it: ${a * b + c}, ${max(v, k)}, ${(v * k) // k} …"""
    k = draw(st.integers(1, 5))
    form = draw(st.sampled_from(["sum", "max", "floordiv", "round"]))
    if form == "sum":
        return f"${{{k} * {value // k} + {value % k}}}"
    if form == "max":
        return f"${{max({value}, {value - k})}}"
    if form == "floordiv":
        return f"${{({value} * {k}) // {k}}}"
    return f"${{round({value} + {k} / 10 - {k} / 10)}}"


def _with_expressions(item: object, draw: st.DrawFn) -> object:
    """A copy of a layer list where each integer parameter may be written as an expression."""
    if isinstance(item, list):
        return [_with_expressions(x, draw) for x in item]
    if isinstance(item, dict):
        out = {}
        for key, value in item.items():
            if key in _NOT_NUMBERS:
                out[key] = value
            elif isinstance(value, int) and not isinstance(value, bool) and draw(st.booleans()):
                out[key] = _as_expression(value, draw)
            else:
                out[key] = _with_expressions(value, draw)
        return out
    return item


@st.composite
def valid_spec_with_expressions(draw: st.DrawFn) -> tuple[tuple[int, int, int], list[Layer], list[Layer]]:
    shape, layers = draw(valid_spec())
    return shape, layers, _with_expressions(layers, draw)  # type: ignore[return-value]


@PROFILE
@given(valid_spec_with_expressions())
def test_numbers_written_as_expressions_check_and_build_like_the_numbers(
    case: tuple[tuple[int, int, int], list[Layer], list[Layer]],
) -> None:
    shape, plain, written = case
    text = spec_text(shape, written)
    note(text)
    event("has an expression" if "${" in text else "no expression")
    graph = cnnspec.check(cnnspec.loads(text, "random.yaml"))
    expected = cnnspec.check(cnnspec.loads(spec_text(shape, plain), "random.yaml"))
    figures = [(n.id, n.kind, n.output_shape, n.params, n.macs, n.receptive_field) for n in graph.nodes]
    assert figures == [(n.id, n.kind, n.output_shape, n.params, n.macs, n.receptive_field) for n in expected.nodes]
    model = cnnspec.build(graph)
    assert_agrees(graph, model, run_with_hooks(graph, model))
