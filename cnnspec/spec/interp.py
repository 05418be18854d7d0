"""`$name` and `${expression}` inside YAML strings: finding them, evaluating them, locating their errors.

Three forms, as a YAML scalar:

- exactly `$name`, or exactly `${name}`: the value bound to name, of any type (a block argument
  may be a list or a mapping);
- exactly `${expression}`: a number (cnnspec.spec.expr); a whole-number result is an integer;
- `${...}` inside a longer string (`conv_${i}`): each part replaced by its value's text.

Used twice: on the spec's data before it is validated (names: `vars`), and on a block's layers
at each use (names: the block's parameters, then `vars`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cnnspec.errors import Diagnostic, Location
from cnnspec.spec.expr import ExprError, as_spec_value, evaluate, fmt_number, names_in, parse

REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
PART = re.compile(r"\$\{([^{}]*)\}")
IDENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")
Path = tuple[Hashable, ...]


def has_expression(value: Any) -> bool:
    """Whether a value is a string that `substitute` would change."""
    return isinstance(value, str) and "$" in value and (REF.match(value) is not None or "${" in value)


@dataclass(frozen=True)
class Evaluated:
    """One string replaced by its value, kept to explain a later schema error at the same place."""

    location: Location  # of the YAML scalar
    text: str  # as written
    value: Any
    inputs: tuple[tuple[str, Any], ...]  # the names it read and their values

    def note(self) -> str:
        used = ", ".join(f"{n} = {fmt_number(v)}" for n, v in self.inputs)
        return f"'{self.text}' is {fmt_number(self.value)}" + (f" ({used})" if used else "")


class SubstitutionError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def column(where: Location, quoted: bool, offset: int) -> Location:
    """The location `offset` characters into a one-line scalar that starts at `where`."""
    if where.line <= 0:
        return where  # a --set argument: no columns to count
    return Location(where.file, where.line, where.col + (1 if quoted else 0) + offset)


def substitute(
    text: str,
    env: Mapping[str, Any],
    where: Location,
    *,
    quoted: bool = False,
    unknown: Callable[[str], tuple[str, str | None]] | None = None,
) -> tuple[Any, Evaluated]:
    """The value of a string holding `$name` or `${...}`; raises SubstitutionError located in the string.

    `unknown(name)` words the error for a name `env` lacks as (message, hint); by default the
    expression evaluator's 'unknown variable' with a did-you-mean.
    """
    ref = REF.match(text)
    if ref is not None:
        return _lookup(ref.group(1), text, env, where, quoted, 1, unknown)
    parts = list(PART.finditer(text))
    unclosed = text.find("${", parts[-1].end() if parts else 0)
    if unclosed >= 0:
        raise SubstitutionError(
            Diagnostic(
                "'${' is never closed",
                column(where, quoted, unclosed),
                hint="write ${EXPRESSION} with the closing '}'",
            )
        )
    whole = len(parts) == 1 and parts[0].span() == (0, len(text))
    pieces: list[str] = []
    values: list[Any] = []
    inputs: list[tuple[str, Any]] = []
    last = 0
    for part in parts:
        body, start = part.group(1), part.start(1)
        ident = IDENT.match(body)
        if ident is not None:
            value, record = _lookup(ident.group(1), text, env, where, quoted, start + ident.start(1), unknown)
            inputs += record.inputs
        else:
            value, used = _evaluate(body, env, where, quoted, start, unknown)
            inputs += [u for u in used if u not in inputs]
        values.append(value)
        pieces += [text[last : part.start()], value if isinstance(value, str) else fmt_number(value)]
        last = part.end()
    if whole:
        result = values[0]
    else:
        bad = next((v for v in values if not isinstance(v, (str, int, float)) or isinstance(v, bool)), None)
        if bad is not None:
            raise SubstitutionError(
                Diagnostic(f"a list or mapping cannot be part of the text '{text}'", where, hint="use $NAME alone")
            )
        result = "".join(pieces) + text[last:]
    return result, Evaluated(where, text, result, tuple(inputs))


def _lookup(
    name: str,
    text: str,
    env: Mapping[str, Any],
    where: Location,
    quoted: bool,
    offset: int,
    unknown: Callable[[str], tuple[str, str | None]] | None,
) -> tuple[Any, Evaluated]:
    if name not in env:
        if unknown is not None:
            message, hint = unknown(name)
            raise SubstitutionError(Diagnostic(message, where, hint=hint, category="reference"))
        try:
            evaluate(parse(name), env)
        except ExprError as exc:
            raise SubstitutionError(
                Diagnostic(exc.message, column(where, quoted, offset + exc.offset), hint=exc.hint)
            ) from None
    value = env[name]
    if isinstance(value, float):
        value = as_spec_value(value)
    return value, Evaluated(where, text, value, ((name, value),))


def _evaluate(
    body: str,
    env: Mapping[str, Any],
    where: Location,
    quoted: bool,
    offset: int,
    unknown: Callable[[str], tuple[str, str | None]] | None,
) -> tuple[Any, list[tuple[str, Any]]]:
    try:
        tree = parse(body)
        used = names_in(tree)
        missing = next((n for n in used if n not in env), None)
        if missing is not None and unknown is not None:
            message, hint = unknown(missing)
            pos = next(m.start() for m in re.finditer(rf"\b{missing}\b", body))
            at = column(where, quoted, offset + pos)
            raise SubstitutionError(Diagnostic(message, at, hint=hint, category="reference"))
        value = as_spec_value(evaluate(tree, env))
    except ExprError as exc:
        known = ", ".join(f"{n} = {fmt_number(env[n])}" for n in _read_names(body) if n in env)
        notes = (f"in '${{{body}}}'" + (f" with {known}" if known else ""),)
        raise SubstitutionError(
            Diagnostic(exc.message, column(where, quoted, offset + exc.offset), notes=notes, hint=exc.hint)
        ) from None
    return value, [(n, env[n]) for n in used]


def _read_names(body: str) -> list[str]:
    try:
        return names_in(parse(body))
    except ExprError:
        return []


def explain(diagnostics: list[Diagnostic], evaluated: Mapping[Location, Evaluated]) -> list[Diagnostic]:
    """Schema errors at a substituted value, with what the expression was and, for an integer field,
    how to make it one."""
    out = []
    for d in diagnostics:
        record = evaluated.get(d.location) if d.location is not None else None
        if record is None:
            out.append(d)
            continue
        hint = d.hint
        fractional = isinstance(record.value, float)
        if fractional and "integer" in d.message:
            hint = (
                "an integer is needed here: make one with round(…), int(…), floor(…), ceil(…) or make_divisible(…, 8)"
            )
        out.append(replace(d, notes=(*d.notes, record.note()), hint=hint))
    return out
