"""The expression grammar: Python's arithmetic on random trees, torchvision's make_divisible, located errors."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnspec.spec.expr import ExprError, as_spec_value, evaluate_text, make_divisible

# --- random integer trees, computed by Python's own operators -------------------------------------


@dataclass(frozen=True)
class Tree:
    text: str  # what we parse
    compute: Callable[[dict[str, int]], int]  # the same tree through Python's operators
    precedence: int = 3  # of its outermost operator: 1 for + -, 2 for * // %, 3 for the rest


_OPS: dict[str, tuple[int, Callable[[int, int], int]]] = {
    "+": (1, operator.add),
    "-": (1, operator.sub),
    "*": (2, operator.mul),
    "//": (2, operator.floordiv),
    "%": (2, operator.mod),
}
NAMES = ("a", "b", "c")


def _leaf(value: int | str) -> Tree:
    if isinstance(value, str):
        name = value
        return Tree(name, lambda env: env[name])
    number = value
    return Tree(str(number), lambda env: number)


def _wrap(tree: Tree, needed: bool) -> str:
    return f"({tree.text})" if needed else tree.text


def _binary(op: str, left: Tree, right: Tree, minimal: bool) -> Tree:
    """`minimal`: only the parentheses Python's precedence and left associativity need, so the
    parser's precedence is tested too; else every operation in parentheses."""
    precedence, f = _OPS[op]
    if minimal:
        text = f"{_wrap(left, left.precedence < precedence)} {op} {_wrap(right, right.precedence <= precedence)}"
        return Tree(text, lambda env: f(left.compute(env), right.compute(env)), precedence)
    text = f"({_wrap(left, left.precedence < 3)}{op}{_wrap(right, right.precedence < 3)})"
    return Tree(text, lambda env: f(left.compute(env), right.compute(env)))


def _unary(operand: Tree) -> Tree:
    return Tree(f"-{_wrap(operand, operand.precedence < 3)}", lambda env: -operand.compute(env))


def _call(name: str, args: list[Tree]) -> Tree:
    f = min if name == "min" else max
    return Tree(f"{name}({', '.join(a.text for a in args)})", lambda env: f(a.compute(env) for a in args))


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> Tree:
    """A random tree of + - * // %, unary minus, min and max over small integers and names.

    Drawn top-down by depth (not with st.recursive, whose derandomized examples seldom mix
    operators of different precedence)."""
    kind = draw(st.sampled_from(["leaf", "binary", "binary", "binary", "unary", "call"])) if depth < 4 else "leaf"
    if kind == "leaf":
        return _leaf(draw(st.one_of(st.integers(0, 50), st.sampled_from(NAMES))))
    if kind == "binary":
        op = draw(st.sampled_from(sorted(_OPS)))
        return _binary(op, draw(trees(depth + 1)), draw(trees(depth + 1)), draw(st.booleans()))
    if kind == "unary":
        return _unary(draw(trees(depth + 1)))
    args = draw(st.lists(trees(depth + 1), min_size=2, max_size=3))
    return _call(draw(st.sampled_from(["min", "max"])), args)


envs = st.fixed_dictionaries({n: st.integers(-20, 20) for n in NAMES})


@settings(max_examples=400)  # cheap examples; fewer leave '//' on negative operands rare
@given(trees(), envs)
def test_random_integer_trees_evaluate_as_python_does(tree: Tree, env: dict[str, int]) -> None:
    try:
        expected: int | None = tree.compute(env)
    except ZeroDivisionError:
        expected = None
    if expected is None:
        with pytest.raises(ExprError, match="division by zero"):
            evaluate_text(tree.text, env)
    else:
        got = evaluate_text(tree.text, env)
        assert (got, type(got)) == (expected, int), tree.text


# --- operators that the integer trees do not reach ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 / 2", 3.5),
        ("-7 // 2", -4),  # floor, as Python: not C's truncation
        ("-7 % 3", 2),
        ("2 + 3 * 4 - 6 / 3", 12.0),
        ("round(2.5)", 2),  # half to even, as Python
        ("round(3.5)", 4),
        ("round(2.675, 1)", 2.7),
        ("floor(-1.5)", -2),
        ("ceil(1.2)", 2),
        ("int(-1.7)", -1),
        ("abs(-3)", 3),
        ("1.5e1 + .5", 15.5),
        ("+-+3", -3),
    ],
)
def test_operators_and_functions_follow_python(text: str, expected: float) -> None:
    got = evaluate_text(text, {})
    assert (got, type(got)) == (expected, type(expected))


def test_a_whole_number_result_goes_into_the_spec_as_an_integer() -> None:
    assert (as_spec_value(64 * 0.5), type(as_spec_value(64 * 0.5))) == (32, int)
    assert as_spec_value(64 * 0.3) == pytest.approx(19.2)
    assert isinstance(as_spec_value(64 * 0.3), float)


# --- make_divisible against torchvision ----------------------------------------------------------


def test_make_divisible_equals_torchvision_over_a_grid() -> None:
    utils = pytest.importorskip("torchvision.models._utils")
    values = [v / 4 for v in range(1, 2049)]  # 0.25 … 512 in quarters: every rounding boundary of 8 and 16
    cases = [(v, d, m) for v in values for d in (1, 3, 4, 8, 16) for m in (None, 0, 8, 32)]
    differing = [(v, d, m) for v, d, m in cases if make_divisible(v, d, m) != utils._make_divisible(v, d, m)]
    assert differing == []
    spelled = evaluate_text("make_divisible(c * width, 8)", {"c": 96, "width": 1.1})
    assert spelled == utils._make_divisible(96 * 1.1, 8)


# --- errors, located in the expression ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "message", "column", "hint"),
    [
        ("64 * widht", {"width": 0.5}, "unknown variable 'widht'", 5, "did you mean 'width'?"),
        ("c // (k - 3)", {"c": 64, "k": 3}, "division by zero: 64 // 0", 2, "the right side of '//' is 0"),
        ("c % 0", {"c": 1}, "division by zero: 1 % 0", 2, None),
        ("(4 + ) * 8", {}, "expected a number, a name or '(' but found ')'", 5, "parentheses"),
        ("2 ** 5", {}, "'**' (a power) is not part of the grammar", 2, "multiply it out"),
        ("min(1, 2", {}, "expected ')' but found the end", 8, "close the '(' at column 4"),
        ("mx(1, 2)", {}, "unknown function 'mx'", 0, "did you mean 'max'?"),
        ("round(1, 2, 3)", {}, "round takes round(x) or round(x, digits), got 3 arguments", 0, None),
        ("name + 1", {"name": "conv"}, "'name' is the string 'conv', not a number", 0, None),
        ("3 $ 4", {}, "unexpected character '$'", 2, "an expression has numbers"),
        ("1 2", {}, "unexpected '2' after a complete expression", 2, None),
        ("make_divisible(10, 2.5)", {}, "make_divisible's divisor must be a positive integer, got 2.5", 0, None),
        ("1e308 * 10", {}, "the result is not a finite number", 6, None),
        ("max", {}, "'max' is a function: call it", 0, None),
    ],
)
def test_errors_say_what_and_at_which_column(
    text: str, env: dict[str, object], message: str, column: int, hint: str | None
) -> None:
    with pytest.raises(ExprError) as caught:
        evaluate_text(text, env)
    assert caught.value.message == message
    assert caught.value.offset == column
    if hint is not None:
        assert hint in (caught.value.hint or "")


def test_hostile_expressions_stop_with_an_error() -> None:
    with pytest.raises(ExprError, match="nests deeper than"):
        evaluate_text("(" * 200 + "1" + ")" * 200, {})
    with pytest.raises(ExprError, match="longer than"):
        evaluate_text("1 + " * 400 + "1", {})
    with pytest.raises(ExprError, match="more than 256 bits"):
        evaluate_text("x * x", {"x": 2**200})
    assert math.isfinite(evaluate_text("x * x", {"x": 2**100}))
