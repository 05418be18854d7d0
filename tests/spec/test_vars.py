"""Spec-level vars and expressions in a spec: --set vars.NAME, the recorded spec, the architecture hash."""

from __future__ import annotations

from pathlib import Path

import pytest

import cnnspec
from cnnspec.checker.checker import check
from cnnspec.errors import CnnspecError, SpecError
from cnnspec.rundir.info import architecture_hash
from cnnspec.spec.dump import dump_spec
from cnnspec.spec.overrides import load_with_overrides, override_spec

FAMILY = Path(__file__).resolve().parents[1] / "fixtures" / "expressions" / "family.yaml"


def conv_bn(c_in: int, c_out: int) -> int:
    """A 3×3 conv without bias and its batchnorm: weights + BN's weight and bias."""
    return c_in * c_out * 9 + 2 * c_out


def family_params(stem: int, c1: int, c2: int, n1: int, n2: int) -> int:
    """The family spec's parameters, by hand: stem conv (bias), two stages of repeated conv+bn, linear."""
    total = 3 * stem * 9 + stem
    total += conv_bn(stem, c1) + (n1 - 1) * conv_bn(c1, c1)
    total += conv_bn(c1, c2) + (n2 - 1) * conv_bn(c2, c2)
    return total + c2 * 10 + 10


def params(spec: cnnspec.Spec) -> int:
    return sum(node.params for node in check(spec).nodes)


def test_set_vars_width_scales_every_layer_that_reads_it() -> None:
    # width 1: stem 32, stages 64 and 128; width 0.5: make_divisible(16, 8) = 16, 32 and 64.
    assert params(load_with_overrides(FAMILY)) == family_params(32, 64, 128, 2, 3) == 427_146
    assert params(load_with_overrides(FAMILY, ["vars.width=0.5"])) == family_params(16, 32, 64, 2, 3) == 107_594


def test_set_vars_depth_changes_the_repeat_counts() -> None:
    spec = load_with_overrides(FAMILY, ["vars.depth=1.4"])  # ceil(2 · 1.4) = 3, ceil(3 · 1.4) = 5
    assert params(spec) == family_params(32, 64, 128, 3, 5)


def test_overriding_a_loaded_spec_reevaluates_its_expressions() -> None:
    spec = load_with_overrides(FAMILY)
    assert params(override_spec(spec, ["vars.width=0.5"])) == 107_594


def test_the_recorded_spec_keeps_expressions_and_the_final_vars() -> None:
    spec = load_with_overrides(FAMILY, ["vars.width=0.5"])
    text = dump_spec(spec)
    assert "width: 0.5" in text
    assert "stem: ${make_divisible(32 * width, 8)}" in text
    assert "out_channels: $stem" in text
    again = cnnspec.loads(text, "spec.yaml")
    assert params(again) == 107_594
    assert architecture_hash(again) == architecture_hash(spec)
    assert params(override_spec(again, ["vars.width=1.0"])) == 427_146


def test_the_architecture_hash_tells_widths_apart() -> None:
    # Only the block reads `width`, and its text is the same at every width: the vars must be hashed.
    text = (
        "name: t\nvars: {width: 1.0}\nmodel:\n  input: {channels: 3, height: 8, width: 8}\n"
        "  blocks:\n    b:\n      layers:\n"
        "        - conv2d: {out_channels: '${make_divisible(64 * width, 8)}', kernel_size: 1}\n"
        "  layers:\n    - block: {name: b}\n"
    )
    one = cnnspec.loads(text)
    half = override_spec(one, ["vars.width=0.5"])
    assert one.model == half.model
    assert params(one) != params(half)
    assert architecture_hash(one) != architecture_hash(half)


def test_the_architecture_hash_of_a_fixed_spec_never_changes() -> None:
    # A literal: a new optional field, or a new way of dumping the model, that changed it would
    # make every earlier run refuse to resume. Fields at their defaults and model.weights are left out.
    text = (
        "name: t\nmodel:\n  input: {channels: 1, height: 4, width: 4}\n"
        "  layers: [conv2d: {out_channels: 2, kernel_size: 3}, batchnorm2d, relu, flatten, layernorm]\n"
    )
    expected = "2a8bdae691e81987308f472f95a340671def05330273b59dfe997691f47b277d"
    assert architecture_hash(cnnspec.loads(text)) == expected
    with_weights = text.replace("  layers:", "  weights: w.pth\n  layers:")
    assert architecture_hash(cnnspec.loads(with_weights, "/nonexistent/spec.yaml")) == expected


def test_set_of_an_undeclared_var_is_refused_with_the_closest_name() -> None:
    with pytest.raises(SpecError) as caught:
        load_with_overrides(FAMILY, ["vars.widht=0.5"])
    (d,) = caught.value.diagnostics
    assert d.message == "the spec declares no var 'widht'"
    assert d.hint == "did you mean 'width'?"


def test_a_var_set_to_itself_is_said_to_refer_to_itself() -> None:
    with pytest.raises(SpecError) as caught:
        load_with_overrides(FAMILY, ["vars.width=${width}"])
    (d,) = caught.value.diagnostics
    assert str(d.location) == "--set vars.width=${width}"
    assert d.message == "the var 'width' refers to itself: its value is what is being defined"  # not "unknown"
    assert d.hint is not None and "--set vars.width=0.5, not --set vars.width=${width}" in d.hint


def test_a_bad_var_value_from_set_is_located_at_the_set() -> None:
    with pytest.raises(SpecError) as caught:
        load_with_overrides(FAMILY, ["vars.width=wide"])
    (d,) = caught.value.diagnostics
    assert str(d.location) == "--set vars.width=wide"
    assert d.message == "the var 'width' must be a number or an expression, got 'wide'"


def test_vars_read_the_vars_above_them_only() -> None:
    text = (
        "name: t\nvars:\n  a: ${b * 2}\n  b: 3\n"
        "model:\n  input: {channels: 1, height: 4, width: 4}\n  layers: [flatten]\n"
    )
    with pytest.raises(SpecError) as caught:
        cnnspec.loads(text, "v.yaml")
    (d,) = caught.value.diagnostics
    # b is declared, only later: it is said so, not called unknown (issue 12b item 5)
    assert (str(d.location), d.message) == (
        "v.yaml:3:8",
        "'b' is declared after 'a'; a var may use only the vars above it",
    )


def test_a_failed_var_is_reported_once_not_at_each_use() -> None:
    text = (
        "name: t\nvars:\n  c: ${1 // 0}\n"
        "model:\n  input: {channels: 1, height: 4, width: 4}\n"
        "  layers:\n"
        "    - conv2d: {out_channels: $c, kernel_size: 1}\n"
        "    - conv2d: {out_channels: $c, kernel_size: 1}\n"
    )
    with pytest.raises(SpecError) as caught:
        cnnspec.loads(text, "v.yaml")
    assert [(str(d.location), d.message) for d in caught.value.diagnostics] == [
        ("v.yaml:3:10", "division by zero: 1 // 0")  # at the operator: `$` is column 6, `/` 10
    ]


def test_a_quoted_expression_is_located_one_column_after_its_quote() -> None:
    text = (
        "name: t\nvars: {w: 1}\nmodel:\n  input: {channels: 1, height: 4, width: 4}\n"
        '  layers:\n    - conv2d: {out_channels: "${w * q}", kernel_size: 1}\n'
    )
    with pytest.raises(SpecError) as caught:
        cnnspec.loads(text, "v.yaml")
    (d,) = caught.value.diagnostics
    # `"` is column 30, `$` 31, `{` 32, `w` 33, ` ` 34, `*` 35, ` ` 36, `q` 37.
    assert (str(d.location), d.message) == ("v.yaml:6:37", "unknown variable 'q'")


def test_block_parameter_defaults_may_be_expressions_of_earlier_parameters() -> None:
    spec = load_with_overrides(FAMILY, ["vars.width=0.75"])  # make_divisible(48, 8) = 48, (96, 8) = 96
    convs = [n for n in check(spec).nodes if n.layer.kind == "conv2d"]
    assert [n.output_shape[0] for n in convs] == [24, 48, 48, 96, 96, 96]


def test_block_input_names_the_input_of_each_block_use() -> None:
    blocks = (
        "name: t\nmodel:\n  input: {channels: 4, height: 4, width: 4}\n  blocks:\n    res:\n      layers:\n"
        "        - conv2d: {id: a, out_channels: 4, kernel_size: 1}\n"
        "        - add: {inputs: [a, block_input]}\n"
        "  layers:\n    - relu: {id: r}\n    - block: {id: b1, name: res}\n    - block: {id: b2, name: res}\n"
        "    - concat: {inputs: [b2, input]}\n"
    )
    graph = check(cnnspec.loads(blocks))
    inputs = {n.id: n.inputs for n in graph.nodes}
    assert inputs["b1.add_1"] == ("b1.a", "r")
    assert inputs["b2.add_1"] == ("b2.a", "b1.add_1")
    assert inputs["concat_3"] == ("b2.add_1", "input")  # `input` still means the model's input


def test_block_input_cannot_be_an_id() -> None:
    text = "name: t\nmodel:\n  input: {channels: 1, height: 4, width: 4}\n  layers:\n    - relu: {id: block_input}\n"
    with pytest.raises(CnnspecError) as caught:
        check(cnnspec.loads(text, "b.yaml"))
    assert [d.message for d in caught.value.diagnostics] == [
        "'block_input' names the input of the enclosing block; choose another id"
    ]


def test_a_var_set_to_one_declared_below_it_is_said_to_be_declared_after() -> None:
    with pytest.raises(SpecError) as caught:
        load_with_overrides(FAMILY, ["vars.width=${stem / 32}"])  # stem comes two lines later
    (d,) = caught.value.diagnostics
    assert str(d.location) == "--set vars.width=${stem / 32}"
    assert d.message == "'stem' is declared after 'width'; a var may use only the vars above it"  # not "unknown"
    assert d.hint == "move 'stem' above 'width' in `vars:`"


@pytest.mark.parametrize(("value", "got"), [("3", "a number (3)"), ("[1, 2]", "a list"), ("null", "null")])
def test_set_of_vars_to_a_non_mapping_is_refused_at_the_set_alone(value: str, got: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_with_overrides(FAMILY, [f"vars={value}"])
    (d,) = caught.value.diagnostics  # one error, not an "unknown variable" at each use
    assert str(d.location) == f"--set vars={value}"
    assert d.message == f"vars must be a mapping of names to values, got {got}"
    assert d.hint == "set one var with --set vars.NAME=VALUE"
