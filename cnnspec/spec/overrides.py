"""`--set KEY=VALUE` overrides, applied to the parsed YAML and validated by the same schema.

Keys are dotted paths (`optimizer.lr`, `model.layers.0.torchvision.weights`); a number
indexes a list. Values are YAML scalars or flow collections (`0.05`, `none`, `[30, 60]`),
parsed by the same safe reader as spec files. A key the schema does not know is an
error with the closest valid name suggested; errors about an overridden value point at
the `--set` that set it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cnnspec.errors import CnnspecError, Diagnostic, Location, SpecError, suggested_name
from cnnspec.spec.errors_map import fields_at
from cnnspec.spec.load import from_data
from cnnspec.spec.model import Spec
from cnnspec.spec.source import (
    STDIN_NAME,
    PathKey,
    SourceMap,
    is_stdin,
    parse_yaml,
    read_spec_text,
    read_stdin_text,
)


@dataclass
class OverrideSourceMap(SourceMap):
    """A SourceMap that places everything under an overridden path at its `--set` argument.

    It keeps the data before the overrides (`before`, with its own map) and the overrides in order
    (`applied`), so that `caused_by_overrides` can check the spec with fewer of them."""

    overrides: dict[PathKey, str] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    before: tuple[Any, SourceMap] | None = None

    def locate(self, path: Sequence[Hashable], *, key: bool = False) -> Location:
        p = tuple(path)
        for prefix in sorted(self.overrides, key=len, reverse=True):
            if p[: len(prefix)] == prefix:
                return Location(f"--set {self.overrides[prefix]}")
        return super().locate(path, key=key)


def _fail(text: str, message: str, hint: str | None = None, suggestion: str | None = None) -> SpecError:
    return SpecError(Diagnostic(message, Location(f"--set {text}"), hint=hint, suggestion=suggestion))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.0.c=VALUE` → (['a', 'b', '0', 'c'], parsed VALUE)."""
    parts, value, _ = _parse_override(text)
    return parts, value


def _parse_override(text: str) -> tuple[list[str], Any, SourceMap]:
    """`parse_override`, and where the value's nodes are in `--set TEXT` (its unreadable scalars too)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise _fail(text, "an override is KEY=VALUE", hint="e.g. --set optimizer.lr=0.05")
    if "[" in key:
        # `layers[0]` is how errors print a path (and how Python indexes); a --set path is all dots.
        dotted_key = re.sub(r"\[\s*(['\"]?)([^\]]*?)\1\s*\]", r".\2", key).replace("[", ".").replace("]", "")
        dotted_key = re.sub(r"\.{2,}", ".", dotted_key).strip(".")
        raise _fail(
            text,
            f"'{key}': a --set path is written with dots alone, a list index too (layers.0, not layers[0])",
            hint=f"write --set {dotted_key}={value.strip()}",
        )
    parts = key.split(".")
    if any(not p for p in parts):
        raise _fail(text, f"'{key}' is not a dotted key path", hint="e.g. model.layers.0.conv2d.out_channels")
    parsed, source = parse_yaml(value.strip(), f"--set {text}")
    return parts, parsed, source


def apply_overrides(data: Any, source: SourceMap, overrides: Sequence[str]) -> tuple[Any, OverrideSourceMap]:
    """Set each KEY=VALUE in plain spec data (mutated in place); unknown keys are errors."""
    located = OverrideSourceMap(source.file, dict(source.values), dict(source.keys), quoted=set(source.quoted))
    if isinstance(source, OverrideSourceMap):
        located.overrides.update(source.overrides)
    if data is None:
        data = {}
    located.applied = list(overrides)
    located.before = (copy.deepcopy(data), source)
    read_problems: list[tuple[PathKey, SourceMap]] = []  # each value's unreadable scalars (`010`), by its path
    for text in overrides:
        parts, value, value_source = _parse_override(text)
        if parts == ["vars"] and not isinstance(value, dict):
            # The whole mapping replaced by one value: every use of every var would then be "unknown".
            raise _fail(
                text,
                f"vars must be a mapping of names to values, got "
                f"{'a list' if isinstance(value, list) else 'null' if value is None else _describe(value)}",
                hint="set one var with --set vars.NAME=VALUE",
            )
        node = data
        path: list[Hashable] = []
        made: tuple[Hashable, ...] | None = None  # the first node this override created or replaced
        item = False  # node is a list item `{KIND: {...}}` (a layer or an augmentation)
        params: type[BaseModel] | None = None  # node is the parameter mapping of that KIND
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the spec"
            if isinstance(node, list):
                if not (part.isascii() and part.isdigit()):
                    raise _fail(text, f"{where} is a list: '{part}' is not an index", hint=_indices(where, len(node)))
                index = int(part)
                if index >= len(node):
                    items = f"{len(node)} item{'s' if len(node) != 1 else ''}"
                    raise _fail(
                        text, f"{where} has {items}: index {index} is out of range", hint=_indices(where, len(node))
                    )
                path.append(index)
                if last:
                    node[index] = value
                else:
                    node[index], fresh = _descend(text, node[index], parts[depth + 1], path, item=True)
                    made = made or (tuple(path) if fresh else None)
                    node = node[index]
                item = isinstance(node, dict) and len(node) == 1 and _kind_class(next(iter(node))) is not None
                params = None
                continue
            if not isinstance(node, dict):  # a spec file that is a single value (_descend hands on containers)
                raise _fail(text, f"{where} is {_describe(node)}, it has no key {part!r}")
            if part not in node:
                _check_new_key(text, node, part, where, path, item, params)
            path.append(part)
            if last:
                node[part] = value
            else:
                node[part], fresh = _descend(text, node.get(part), parts[depth + 1], path)
                made = made or (tuple(path) if fresh else None)
                node = node[part]
            params = _kind_class(part) if item else None
            item = False
        located.overrides[tuple(path)] = text
        if made is not None:  # what was not in the file is this --set's: errors about it point here
            located.overrides.setdefault(made, text)
        read_problems.append((tuple(path), value_source))
    _carry_problems(source, located, read_problems)
    return data, located


def _carry_problems(source: SourceMap, located: OverrideSourceMap, values: Sequence[tuple[PathKey, SourceMap]]) -> None:
    """The unreadable scalars (`seed: 010`, `.inf`) of the file that no `--set` replaced, and those of each
    `--set` value at its argument: reported with the schema's errors, as without overrides."""

    def replaced(path: PathKey) -> bool:
        return any(path[: len(prefix)] == prefix for prefix in located.overrides)

    where = source.values
    gone = {Location(source.file, *where[p]) for p in source.problem_paths if replaced(p) and p in where}
    located.problems = [d for d in source.problems if d.location not in gone]
    located.problem_paths = {p for p in source.problem_paths if not replaced(p)}
    for n, (at, value_source) in enumerate(values):
        if any(at[: len(later)] == later for later, _ in values[n + 1 :]):
            continue  # a later --set replaced this one's value
        located.problems += [replace(d, location=Location(value_source.file)) for d in value_source.problems]
        located.problem_paths |= {(*at, *p) for p in value_source.problem_paths}


def caused_by_overrides(
    spec: Spec, found: Sequence[Diagnostic], recheck: Callable[[Spec], Sequence[Diagnostic]]
) -> list[Diagnostic]:
    """`found` (what a check of `spec` reported), with each problem that the file alone does not have
    located at the `--set` that brought it: a kernel set too large gives a shape error at its layer's line,
    a taller model.input a data error at the augmentation's; both are the `--set`'s doing.

    `recheck` is the same check, run on the spec with the first k overrides (k = 0, 1, …; a CnnspecError
    from it: not known for that spec): the override that makes it appear is the one it is located at, with the file's
    position kept as a note. A problem the file has without any override keeps its location; so does
    one whose spec with fewer overrides cannot be read (what it would say is not known)."""
    source = spec.source
    if not isinstance(source, OverrideSourceMap) or not source.applied or source.before is None:
        return list(found)
    in_file = [i for i, d in enumerate(found) if d.location is not None and d.location.file == source.file]
    if not in_file:
        return list(found)
    data, before = source.before
    said: list[set[tuple[object, ...]] | None] = []  # what the spec with the first k overrides reports
    for k in range(len(source.applied)):
        try:
            fewer = from_data(*apply_overrides(copy.deepcopy(data), before, source.applied[:k]))
            said.append({_said(d) for d in recheck(fewer)})
        except CnnspecError:  # that spec cannot be read, or the check cannot run on it
            said.append(None)
    out = list(found)
    for i in in_file:
        d = found[i]
        if said[0] is not None and _said(d) in said[0]:
            continue  # the file has it
        first = next((k for k in range(1, len(said)) if _said(d) in (said[k] or ())), len(said))
        if any(s is None for s in said[:first]):
            continue  # a spec before it could not be read: which --set brought it is not known
        out[i] = replace(
            d, location=Location(f"--set {source.applied[first - 1]}"), notes=(*d.notes, f"in the file at {d.location}")
        )
    return out


def _said(d: Diagnostic) -> tuple[object, ...]:
    return (d.location, d.severity, d.category, d.message)


def _indices(where: str, length: int) -> str:
    if length == 0:
        return f"{where} is empty: set the whole list, e.g. --set {where}=[...]"
    return f"use a number 0…{length - 1}; to add items, set the whole list: --set {where}=[...]"


def _descend(text: str, value: Any, next_key: str, path: Sequence[Hashable], *, item: bool = False) -> tuple[Any, bool]:
    """The node to step into for `next_key`, and whether it is new: a mapping or list as it is, a bare
    list item `- relu` as {relu: {}}, a missing (or null) value as a new mapping; a scalar only where
    the schema takes a mapping instead (`data.normalize: none` → {mean, std}). A number, a string or a
    boolean that cannot hold keys is a located error, and so is an index into a list that is not there."""
    where = ".".join(str(p) for p in path)
    if isinstance(value, (dict, list)):
        return value, False
    if item and isinstance(value, str):
        return {value: {}}, False  # the same layer, written out: it stays located in the file
    index = next_key.isascii() and next_key.isdigit()
    if value is None:
        if index:
            raise _fail(
                text,
                f"{where} is not set, so it has no item {next_key}",
                hint=f"set the whole list, e.g. --set {where}=[...]",
            )
        return {}, True
    if not index and isinstance(value, str) and fields_at(Spec, path):
        return {}, True
    raise _fail(
        text,
        f"{where} is {_describe(value)}, it has no {f'item {next_key}' if index else f'key {next_key!r}'}",
        hint=f"set the value itself: --set {where}=VALUE",
    )


def _describe(value: Any) -> str:
    """A scalar as an error names it: `a number (0.005)`, `a string ('digits-cnn')`, `a boolean (true)`."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    return f"a single value ({value!r})"


def _kind_class(name: Any) -> type[BaseModel] | None:
    """The layer kind or augmentation class a list item's key names, if any."""
    from cnnspec.augments import AUGMENTS
    from cnnspec.layers import REGISTRY

    if not isinstance(name, str):
        return None
    return REGISTRY.get(name) or AUGMENTS.get(name)


def _check_new_key(
    text: str,
    node: dict[str, Any],
    part: str,
    where: str,
    path: Sequence[Hashable],
    item: bool,
    params: type[BaseModel] | None,
) -> None:
    """Refuse a key the schema does not have at this place, suggesting the closest one."""
    if item:
        kind = next(iter(node))
        if _kind_class(part) is not None:
            raise _fail(text, f"{where} is a {kind}, not a {part}", hint=f"set its parameters as {where}.{kind}.PARAM")
        raise _fail(
            text,
            f"unknown key '{part}' in {where}",
            hint=f"{where} is `- {kind}`: its parameters go under {where}.{kind}.{part}",
        )
    if tuple(path) == ("vars",):
        # A var nothing declares could only be read by an expression that is already an error.
        declared = list(node)
        close = suggested_name(part, declared)
        listing = f"its vars: {', '.join(declared)}" if declared else "declare it under vars:"
        raise _fail(text, f"the spec declares no var '{part}'", hint=None if close else listing, suggestion=close)
    valid = list(params.model_fields) if params is not None else fields_at(Spec, path)
    if valid and part not in valid:
        close = suggested_name(part, valid)
        listing = f"valid keys: {', '.join(valid)}"
        raise _fail(text, f"unknown key '{part}' in {where}", hint=None if close else listing, suggestion=close)


def load_with_overrides(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Load a spec file (`-`: standard input, located as `<stdin>`) with overrides applied, validated as
    one document."""
    return loads_with_overrides(*spec_file_text(path), overrides)


def spec_file_text(path: str | Path) -> tuple[str, str]:
    """A spec's text and the name its errors are located at: the file's path, or `<stdin>` for `-`."""
    if is_stdin(path):
        return read_stdin_text(), STDIN_NAME
    return read_spec_text(path), str(path)


def loads_with_overrides(text: str, file: str, overrides: Sequence[str] = ()) -> Spec:
    """Spec text (read from `file`) with overrides applied, validated as one document."""
    data, source = parse_yaml(text, file)
    if overrides:
        data, source = apply_overrides(data, source, overrides)
    return from_data(data, source)


def override_spec(spec: Spec, overrides: Sequence[str]) -> Spec:
    """A validated copy of `spec` with overrides applied."""
    if not overrides:
        return spec
    from cnnspec.spec.dump import spec_data

    # A spec with vars or expressions starts from what was written, so `vars.width=…` reaches every
    # expression that reads it (spec_data would hold their values).
    base = copy.deepcopy(spec._written) if spec._written is not None else spec_data(spec)
    data, source = apply_overrides(base, spec.source, overrides)
    return from_data(data, source)
