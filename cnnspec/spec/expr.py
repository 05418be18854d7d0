"""Arithmetic in specs: `${out * 4}`, `${make_divisible(c * width, 8)}`, evaluated by our own grammar.

A small Pratt parser over a closed grammar, never Python's `eval`:

    expr     := term (('+' | '-') term)*
    term     := unary (('*' | '/' | '//' | '%') unary)*
    unary    := ('-' | '+') unary | primary
    primary  := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

Why our own parser rather than `ast.parse` with a whitelist: Python's grammar is far larger than
this one (`**`, comparisons, attributes, `1_000`, `0x2A`, f-strings), so a whitelist must refuse
most of what parses, and its errors speak of Python, not of the spec. This grammar is four lines,
every error says which column of the expression is wrong, and nothing outside it can be written.
Values follow Python's arithmetic exactly (`//` and `%` floor, `/` is true division, `round`
rounds half to even), so `${k // 2}` means what a Python user expects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnspec.errors import shown, suggest

Number = int | float
MAX_LENGTH = 1_000  # characters in one expression
MAX_DEPTH = 50  # nesting of parentheses, calls and unary signs
# Integers beyond 2**256 are no layer size; the cap keeps vars that square each other in a chain
# from growing numbers exponentially.
MAX_BITS = 256


class ExprError(Exception):
    """A problem in one expression; `offset` is the 0-based column in the expression text."""

    def __init__(self, message: str, offset: int = 0, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


# --- the tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: Number
    pos: int


@dataclass(frozen=True)
class Name:
    name: str
    pos: int


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node
    pos: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node
    pos: int  # of the operator


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Node, ...]
    pos: int


Node = Num | Name | Unary | Binary | Call


# --- functions ----------------------------------------------------------------------------


def make_divisible(v: Number, divisor: int, min_value: Number | None = None) -> Number:
    """torchvision's `_make_divisible`: v rounded to the nearest multiple of divisor, at least
    min_value (default divisor), and never more than 10% below v."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise ExprError(f"round's digits must be an integer, got {fmt_number(ndigits)}")
    return round(x, ndigits)


def _make_divisible(v: Number, divisor: Number, min_value: Number | None = None) -> Number:
    if not isinstance(divisor, int) or divisor <= 0:
        raise ExprError(f"make_divisible's divisor must be a positive integer, got {fmt_number(divisor)}")
    return make_divisible(v, divisor, min_value)


@dataclass(frozen=True)
class Function:
    impl: Callable[..., Number]
    min_args: int
    max_args: int | None  # None: any number
    signature: str


FUNCTIONS: dict[str, Function] = {
    "min": Function(min, 2, None, "min(a, b, ...)"),
    "max": Function(max, 2, None, "max(a, b, ...)"),
    "round": Function(_round, 1, 2, "round(x) or round(x, digits)"),
    "floor": Function(math.floor, 1, 1, "floor(x)"),
    "ceil": Function(math.ceil, 1, 1, "ceil(x)"),
    "int": Function(int, 1, 1, "int(x)"),
    "abs": Function(abs, 1, 1, "abs(x)"),
    "make_divisible": Function(_make_divisible, 2, 3, "make_divisible(v, divisor) or make_divisible(v, divisor, min)"),
}


# --- parsing ------------------------------------------------------------------------------

# ASCII only: `\d` would take '٣' or '𝟴' as digits (Python's int() reads them), which no reader of the
# spec would see as numbers.
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>//|[-+*/%(),]))",
    re.ASCII,
)
GRAMMAR = "an expression has numbers, names, + - * / // %, parentheses and " + ", ".join(FUNCTIONS)
_BINARY = {"+": 10, "-": 10, "*": 20, "/": 20, "//": 20, "%": 20}
_PREFIX = 30


@dataclass(frozen=True)
class Token:
    kind: str  # num, name, op, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            start = len(text) - len(text[pos:].lstrip())
            bad = text[start]
            if bad.isdigit() or bad.isnumeric():
                raise ExprError(f"'{bad}' is not an ASCII digit", start, hint="write numbers with the digits 0-9")
            raise ExprError(f"unexpected character '{bad}'", start, hint=GRAMMAR)
        kind = m.lastgroup
        if kind == "op" and text.startswith("**", m.start(kind)):
            raise ExprError(
                "'**' (a power) is not part of the grammar",
                m.start(kind),
                hint="multiply it out (2 * 2 * 2), or write the value",
            )
        tokens.append(Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, op: str, opened: Token) -> None:
        token = self.peek()
        if token.kind == "op" and token.text == op:
            self.take()
            return
        found = "the end" if token.kind == "end" else f"'{token.text}'"
        raise ExprError(
            f"expected '{op}' but found {found}",
            token.pos,
            hint=f"close the '{opened.text}' at column {opened.pos + 1}",
        )

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise ExprError("the expression is empty", 0, hint="write a value, e.g. ${64 * width}")
        node = self.expression(0)
        token = self.peek()
        if token.kind != "end":
            raise ExprError(f"unexpected '{token.text}' after a complete expression", token.pos, hint=GRAMMAR)
        return node

    def expression(self, rbp: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"the expression nests deeper than {MAX_DEPTH} levels", self.peek().pos)
        left = self.prefix(self.take())
        while True:
            token = self.peek()
            lbp = _BINARY.get(token.text, 0) if token.kind == "op" else 0
            if lbp <= rbp:
                break
            self.take()
            left = Binary(token.text, left, self.expression(lbp), token.pos)
        self.depth -= 1
        return left

    def prefix(self, token: Token) -> Node:
        if token.kind == "num":
            value: Number = float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
            if isinstance(value, float) and not math.isfinite(value):
                raise ExprError(f"'{token.text}' is not a finite number", token.pos)
            return Num(_finite(value, token.pos), token.pos)
        if token.kind == "name":
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text == "(":
                return self.call(token, self.take())
            return Name(token.text, token.pos)
        if token.kind == "op" and token.text in ("-", "+"):
            return Unary(token.text, self.expression(_PREFIX), token.pos)
        if token.kind == "op" and token.text == "(":
            inner = self.expression(0)
            self.expect(")", token)
            return inner
        found = "the end of the expression" if token.kind == "end" else f"'{token.text}'"
        raise ExprError(f"expected a number, a name or '(' but found {found}", token.pos, hint=GRAMMAR)

    def call(self, name: Token, opened: Token) -> Node:
        if name.text not in FUNCTIONS:
            raise ExprError(
                f"unknown function {shown(name.text)}",
                name.pos,
                hint=suggest(name.text, list(FUNCTIONS)) or f"the functions are {', '.join(FUNCTIONS)}",
            )
        args: list[Node] = []
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            args.append(self.expression(0))
            while self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                args.append(self.expression(0))
        self.expect(")", opened)
        function = FUNCTIONS[name.text]
        if len(args) < function.min_args or (function.max_args is not None and len(args) > function.max_args):
            raise ExprError(f"{name.text} takes {function.signature}, got {len(args)} arguments", name.pos)
        return Call(name.text, tuple(args), name.pos)


def parse(text: str) -> Node:
    """The tree of an expression; raises ExprError with the column of a syntax error."""
    return _Parser(text).parse()


# --- evaluation ---------------------------------------------------------------------------


def fmt_number(value: Any) -> str:
    """A value as a person reads it in a message: 64, 0.75, 'abc'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return repr(value) if isinstance(value, str) else type(value).__name__


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe(value: Any) -> str:
    """What a non-number is, for 'x is ..., not a number'."""
    if isinstance(value, bool):
        return f"{fmt_number(value)} (true/false)"
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return type(value).__name__


def evaluate(node: Node, env: Mapping[str, Any]) -> Number:
    """The value of a parsed expression with names from `env`; raises ExprError located at the culprit."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Name):
        if node.name not in env:
            if node.name in FUNCTIONS:
                raise ExprError(f"'{node.name}' is a function: call it", node.pos, hint=FUNCTIONS[node.name].signature)
            known = sorted(env)
            raise ExprError(
                f"unknown variable {shown(node.name)}",
                node.pos,
                hint=suggest(node.name, known)
                or (f"known names: {', '.join(known)}" if known else "declare it under `vars:` (or a block's params)"),
            )
        value = env[node.name]
        if not is_number(value):
            raise ExprError(f"'{node.name}' is {describe(value)}, not a number", node.pos)
        return value  # type: ignore[no-any-return]
    if isinstance(node, Unary):
        operand = evaluate(node.operand, env)
        return -operand if node.op == "-" else +operand
    if isinstance(node, Binary):
        return _binary(node, evaluate(node.left, env), evaluate(node.right, env))
    args = [evaluate(a, env) for a in node.args]
    try:
        value = FUNCTIONS[node.func].impl(*args)
    except ExprError as exc:
        raise ExprError(exc.message, node.pos, hint=exc.hint) from None
    except ZeroDivisionError:
        raise ExprError(f"division by zero in {node.func}({', '.join(map(fmt_number, args))})", node.pos) from None
    except (OverflowError, ValueError):
        raise ExprError(f"{node.func}({', '.join(map(fmt_number, args))}) is not a finite number", node.pos) from None
    return _finite(value, node.pos)


def _binary(node: Binary, left: Number, right: Number) -> Number:
    op = node.op
    if op in ("/", "//", "%") and right == 0:
        raise ExprError(
            f"division by zero: {fmt_number(left)} {op} {fmt_number(right)}",
            node.pos,
            hint=f"the right side of '{op}' is 0: check the values it reads",
        )
    try:
        if op == "+":
            value = left + right
        elif op == "-":
            value = left - right
        elif op == "*":
            value = left * right
        elif op == "/":
            value = left / right
        elif op == "//":
            value = left // right
        else:
            value = left % right
    except OverflowError:
        raise ExprError(f"{fmt_number(left)} {op} {fmt_number(right)} is too large", node.pos) from None
    return _finite(value, node.pos)


def _finite(value: Number, pos: int) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError("the result is not a finite number", pos)
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise ExprError(f"the result has more than {MAX_BITS} bits: no size is that large", pos)
    return value


def names_in(node: Node) -> list[str]:
    """The variable names an expression reads, in order of appearance (for notes)."""
    out: list[str] = []
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            if n.name not in out:
                out.append(n.name)
        elif isinstance(n, Unary):
            stack.append(n.operand)
        elif isinstance(n, Binary):
            stack += [n.right, n.left]
        elif isinstance(n, Call):
            stack += reversed(n.args)
    return out


def evaluate_text(text: str, env: Mapping[str, Any]) -> Number:
    """Parse and evaluate in one step."""
    return evaluate(parse(text), env)


def as_spec_value(value: Number) -> Number:
    """What an expression puts into the spec: a whole-number float is an integer (`${64 * 0.5}` is 32),
    so it fits integer fields; a float field accepts either."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


__all__: Sequence[str] = [
    "FUNCTIONS",
    "ExprError",
    "as_spec_value",
    "evaluate",
    "evaluate_text",
    "make_divisible",
    "names_in",
    "parse",
]
