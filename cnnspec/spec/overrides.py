"""`--set KEY=VALUE` overrides, applied to the parsed YAML and validated by the same schema.

Keys are dotted paths (`optimizer.lr`, `model.layers.0.torchvision.weights`); a number
indexes a list. Values are YAML scalars or flow collections (`0.05`, `none`, `[30, 60]`),
parsed by the same safe reader as spec files. A key the schema does not know is an
error with the closest valid name suggested; errors about an overridden value point at
the `--set` that set it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cnnspec.errors import Diagnostic, Location, SpecError, suggest
from cnnspec.spec.errors_map import fields_at
from cnnspec.spec.load import from_data
from cnnspec.spec.model import Spec
from cnnspec.spec.source import PathKey, SourceMap, parse_yaml, read_spec_text


@dataclass
class OverrideSourceMap(SourceMap):
    """A SourceMap that places everything under an overridden path at its `--set` argument."""

    overrides: dict[PathKey, str] = field(default_factory=dict)

    def locate(self, path: Sequence[Hashable], *, key: bool = False) -> Location:
        p = tuple(path)
        for prefix in sorted(self.overrides, key=len, reverse=True):
            if p[: len(prefix)] == prefix:
                return Location(f"--set {self.overrides[prefix]}")
        return super().locate(path, key=key)


def _fail(text: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError(Diagnostic(message, Location(f"--set {text}"), hint=hint))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.0.c=VALUE` → (['a', 'b', '0', 'c'], parsed VALUE)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise _fail(text, "an override is KEY=VALUE", hint="e.g. --set optimizer.lr=0.05")
    parts = key.split(".")
    if any(not p for p in parts):
        raise _fail(text, f"'{key}' is not a dotted key path", hint="e.g. model.layers.0.conv2d.out_channels")
    parsed, _ = parse_yaml(value.strip(), f"--set {text}")
    return parts, parsed


def apply_overrides(data: Any, source: SourceMap, overrides: Sequence[str]) -> tuple[Any, OverrideSourceMap]:
    """Set each KEY=VALUE in plain spec data (mutated in place); unknown keys are errors."""
    located = OverrideSourceMap(source.file, dict(source.values), dict(source.keys), quoted=set(source.quoted))
    if isinstance(source, OverrideSourceMap):
        located.overrides.update(source.overrides)
    if data is None:
        data = {}
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        path: list[Hashable] = []
        item = False  # node is a list item `{KIND: {...}}` (a layer or an augmentation)
        params: type[BaseModel] | None = None  # node is the parameter mapping of that KIND
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the spec"
            if isinstance(node, list):
                if not part.isdigit():
                    raise _fail(
                        text, f"{where} is a list: '{part}' is not an index", hint=f"use a number 0…{len(node) - 1}"
                    )
                index = int(part)
                if index >= len(node):
                    raise _fail(text, f"{where} has {len(node)} items: index {index} is out of range")
                path.append(index)
                if last:
                    node[index] = value
                else:
                    node[index] = _as_mapping(node[index], parts[depth + 1], item=True)
                    node = node[index]
                item = isinstance(node, dict) and len(node) == 1 and _kind_class(next(iter(node))) is not None
                params = None
                continue
            if not isinstance(node, dict):
                raise _fail(text, f"{where} is a single value, it has no key '{part}'")
            if part not in node:
                _check_new_key(text, node, part, where, path, item, params)
            path.append(part)
            if last:
                node[part] = value
            else:
                node[part] = _as_mapping(node.get(part), parts[depth + 1])
                node = node[part]
            params = _kind_class(part) if item else None
            item = False
        located.overrides[tuple(path)] = text
    return data, located


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
        raise _fail(
            text,
            f"the spec declares no var '{part}'",
            hint=suggest(part, declared)
            or (f"its vars: {', '.join(declared)}" if declared else "declare it under vars:"),
        )
    valid = list(params.model_fields) if params is not None else fields_at(Spec, path)
    if valid and part not in valid:
        raise _fail(
            text, f"unknown key '{part}' in {where}", hint=suggest(part, valid) or f"valid keys: {', '.join(valid)}"
        )


def _as_mapping(value: Any, next_key: str, *, item: bool = False) -> Any:
    """Make room to descend: a bare list item `- relu` becomes {relu: {}}, a missing or scalar value {}."""
    if isinstance(value, (dict, list)):
        return value
    if item and isinstance(value, str):
        return {value: {}}
    if value is None or not next_key.isdigit():
        return {}
    return value


def load_with_overrides(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Load a spec file with overrides applied, validated as one document."""
    file = str(path)
    data, source = parse_yaml(read_spec_text(path), file)
    if overrides:
        data, source = apply_overrides(data, source, overrides)
    return from_data(data, source)


def override_spec(spec: Spec, overrides: Sequence[str]) -> Spec:
    """A validated copy of `spec` with overrides applied."""
    if not overrides:
        return spec
    import copy

    from cnnspec.spec.dump import spec_data

    # A spec with vars or expressions starts from what was written, so `vars.width=…` reaches every
    # expression that reads it (spec_data would hold their values).
    base = copy.deepcopy(spec._written) if spec._written is not None else spec_data(spec)
    data, source = apply_overrides(base, spec.source, overrides)
    return from_data(data, source)
