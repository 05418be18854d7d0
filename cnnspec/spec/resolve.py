"""Spec-level `vars:` and the expressions that use them, resolved before the schema sees the data.

`vars` is evaluated first, in order (a var may use the vars above it). Then every `$name` /
`${...}` string in the rest of the document becomes its value, except inside `model.blocks`:
a block's parameters and layers are filled in at each use (cnnspec.checker.expand), where the
block's parameters are visible too.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnspec.errors import Diagnostic, Location, shown
from cnnspec.spec.expr import FUNCTIONS, is_number
from cnnspec.spec.interp import Evaluated, SubstitutionError, has_expression, substitute
from cnnspec.spec.source import SourceMap

Path = tuple[Hashable, ...]
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names with a meaning of their own in `inputs` or in the grammar; a var cannot take them.
RESERVED = frozenset(FUNCTIONS) | {"input", "block_input"}


@dataclass
class Resolution:
    """What resolving did: the vars' values, each replaced string (by path), and the problems."""

    vars: dict[str, Any] = field(default_factory=dict)
    evaluated: dict[Path, Evaluated] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    failed: set[Path] = field(default_factory=set)

    def by_location(self) -> dict[Location, Evaluated]:
        return {e.location: e for e in self.evaluated.values()}


def resolve(data: Any, source: SourceMap) -> tuple[Any, Resolution]:
    """A copy of `data` with vars evaluated and expressions outside blocks replaced by their values."""
    out = Resolution()
    if not isinstance(data, dict):
        return data, out
    resolved = dict(data)
    if "vars" in data:
        resolved["vars"] = _vars(data["vars"], source, out)
    for key, value in data.items():
        if key != "vars":
            resolved[key] = _walk(value, (key,), source, out)
    return resolved, out


def _vars(raw: Any, source: SourceMap, out: Resolution) -> Any:
    if not isinstance(raw, dict):
        return raw  # the schema says it must be a mapping
    values: dict[str, Any] = {}
    names = list(raw)
    for index, (name, value) in enumerate(raw.items()):
        path: Path = ("vars", name)
        if not (isinstance(name, str) and VAR_NAME.match(name)):
            out.diagnostics.append(
                Diagnostic(
                    f"{shown(name)} cannot name a var",
                    source.locate(path, key=True),
                    hint="use letters, digits and '_'",
                )
            )
            out.failed.add(path)
            continue
        if name in RESERVED:
            what = "a function of the expression grammar" if name in FUNCTIONS else "a reserved name in `inputs`"
            out.diagnostics.append(
                Diagnostic(f"the var '{name}' is {what}", source.locate(path, key=True), hint="choose another name")
            )
            out.failed.add(path)
            values[name] = value
            continue
        if has_expression(value):
            failed = [str(f[1]) for f in out.failed]
            try:
                value, record = substitute(
                    value,
                    out.vars,
                    source.locate(path),
                    quoted=path in source.quoted,
                    unknown=lambda n, failed=failed, name=name, index=index: _unknown(  # type: ignore[misc]
                        n, out.vars, failed, defining=name, below=names[index + 1 :]
                    ),
                )
            except SubstitutionError as exc:
                if exc.diagnostic.message != _SILENT:
                    out.diagnostics.append(exc.diagnostic)
                out.failed.add(path)
                values[name] = value
                continue
            out.evaluated[path] = record
        if is_number(value):
            out.vars[name] = value
        elif path not in source.problem_paths:
            got = (
                f"'{value}'"
                if isinstance(value, str)
                else "true/false"
                if isinstance(value, bool)
                else "a list or mapping"
                if isinstance(value, (list, dict))
                else "null"
            )
            out.diagnostics.append(
                Diagnostic(
                    f"the var '{name}' must be a number or an expression, got {got}",
                    source.locate(path),
                    hint="e.g. width: 0.75, or c1: ${make_divisible(32 * width, 8)}",
                )
            )
            out.failed.add(path)
        values[name] = value
    return values


def _walk(value: Any, path: Path, source: SourceMap, out: Resolution) -> Any:
    if path[:2] == ("model", "blocks"):
        return value  # filled in at each use, with the block's parameters
    if isinstance(value, dict):
        return {k: _walk(v, (*path, k), source, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, (*path, i), source, out) for i, v in enumerate(value)]
    if not has_expression(value):
        return value
    failed = [n for n in out.failed if len(n) == 2]  # vars that did not evaluate: their uses say nothing more
    env = dict(out.vars)
    try:
        result, record = substitute(
            value,
            env,
            source.locate(path),
            quoted=path in source.quoted,
            unknown=lambda n: _unknown(n, env, [str(f[1]) for f in failed]),
        )
    except SubstitutionError as exc:
        if exc.diagnostic.message != _SILENT:
            out.diagnostics.append(exc.diagnostic)
        out.failed.add(path)
        return value
    out.evaluated[path] = record
    return result


_SILENT = "\x00failed var"


def _unknown(
    name: str, env: dict[str, Any], failed: list[str], *, defining: str | None = None, below: Sequence[str] = ()
) -> tuple[str, str | None]:
    """The message and hint for `name`, which `env` lacks; `defining` is the var whose value is being
    evaluated, None outside `vars`, and `below` the vars declared after it."""
    from cnnspec.errors import suggest

    if name in failed:
        return _SILENT, None  # said where the var is defined
    if name == defining:
        return (
            f"the var '{name}' refers to itself: its value is what is being defined",
            "give it a number, or an expression of the vars above it (with --set too: "
            f"--set vars.{name}=0.5, not --set vars.{name}=${{{name}}})",
        )
    if name in below:  # vars are evaluated top to bottom, so a later one has no value yet
        return (
            f"'{name}' is declared after '{defining}'; a var may use only the vars above it",
            f"move '{name}' above '{defining}' in `vars:`",
        )
    known = sorted(env)
    hint = suggest(name, known) or (f"known vars: {', '.join(known)}" if known else "declare it under `vars:`")
    return f"unknown variable {shown(name)}", hint
