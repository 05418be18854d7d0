"""Helpers for the spec fuzz tests: a hypothesis strategy from the JSON Schema, and a YAML
writer that records where it put every node.

hypothesis-jsonschema cannot follow the schema's recursive `$ref`s (a residual's body is
a list of layers) and needed minutes for 100 examples of the unrolled schema, so this is
a small strategy for the parts of JSON Schema that schemas/cnnspec.schema.json uses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from cnnspec.spec.schema import item_kinds

Path = tuple[Hashable, ...]

# Bounds that keep generated networks small enough to check in milliseconds.
MAX_INT = 4096
MAX_ITEMS = 4


def from_schema(schema: dict[str, Any], *, max_depth: int = 3) -> st.SearchStrategy[Any]:
    """Values valid under `schema` (draft 2020-12 subset: $ref, anyOf/oneOf, enum, const, types, and the
    `if: {type: string}` of a layer or augmentation item)."""
    defs: dict[str, Any] = schema.get("$defs", {})
    cache: dict[tuple[str, int], st.SearchStrategy[Any]] = {}

    def ref(name: str, depth: int) -> st.SearchStrategy[Any]:
        key = (name, depth)
        if key not in cache:
            cache[key] = st.deferred(lambda: build(defs[name], depth))
        return cache[key]

    def build(node: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name == "LayerItem" and depth >= max_depth:
                # Deep enough: only layers without sub-layers (the bare names).
                return st.sampled_from(item_kinds(defs["LayerItem"])[1])
            return ref(name, depth + (name == "LayerItem"))
        if node.get("if") == {"type": "string"}:  # an item: a bare name, or a mapping of one kind to its parameters
            bare = item_kinds(node)[1]
            named = [st.fixed_dictionaries({k: build(v, depth)}) for k, v in node["else"]["properties"].items()]
            return st.one_of(st.sampled_from(bare), *named) if bare else st.one_of(named)
        if "const" in node:
            return st.just(node["const"])
        if "enum" in node:
            return st.sampled_from(node["enum"])
        for key in ("anyOf", "oneOf"):
            if key in node:
                return st.one_of([build(sub, depth) for sub in node[key]])
        kind = node.get("type")
        if kind == "object":
            return _object(node, depth)
        if kind == "array":
            items = build(node.get("items", {}), depth)
            low = node.get("minItems", 0)
            return st.lists(items, min_size=low, max_size=min(node.get("maxItems", low + MAX_ITEMS), low + MAX_ITEMS))
        if kind == "integer":
            low = node.get("minimum", node.get("exclusiveMinimum", -MAX_INT - 1) + 1)
            high = node.get("maximum", node.get("exclusiveMaximum", MAX_INT + 1) - 1)
            return st.integers(max(low, -MAX_INT), min(high, max(low, MAX_INT)))
        if kind == "number":
            low = node.get("minimum", node.get("exclusiveMinimum", -1e6))
            high = node.get("maximum", node.get("exclusiveMaximum", 1e6))
            return st.floats(
                low,
                high,
                exclude_min="exclusiveMinimum" in node,
                exclude_max="exclusiveMaximum" in node,
                allow_nan=False,
                allow_infinity=False,
            )
        if kind == "string":
            if "pattern" in node:
                return st.from_regex(node["pattern"], fullmatch=True).filter(
                    lambda s: len(s) <= node.get("maxLength", 64)
                )
            return st.text(
                st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                min_size=node.get("minLength", 0),
                max_size=min(node.get("maxLength", 20), 20),
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        return st.none()  # {} (any value): null is valid

    def _object(node: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        props: dict[str, Any] = node.get("properties", {})
        required = set(node.get("required", []))
        if props:

            def prop(name: str, sub: dict[str, Any]) -> st.SearchStrategy[Any]:
                # `repeat: {n}` multiplies the layers inside: small counts keep examples fast
                # (expansion size has its own test and limit).
                return st.integers(1, 3) if name == "n" and sub.get("type") == "integer" else build(sub, depth)

            return st.fixed_dictionaries(
                {k: prop(k, v) for k, v in props.items() if k in required},
                optional={k: prop(k, v) for k, v in props.items() if k not in required},
            )
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return st.dictionaries(
                st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), build(extra, depth), max_size=3
            )
        return st.just({})

    return build(schema, 0)


# --- a YAML writer that knows where everything is -------------------------------------------


@dataclass
class Written:
    """YAML text and the 1-based (line, col) of every value, and of every mapping key."""

    text: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)


def scalar(value: Any) -> str:
    """A scalar in YAML 1.2 core-schema syntax (strings always double-quoted)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        assert math.isfinite(value)
        text = repr(value)
        return text if any(c in text for c in ".e") else text + ".0"
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def write(data: Any, duplicate: Path | None = None) -> Written:
    """Block-style YAML for `data`, one key per line; `duplicate` names a mapping key to write twice.

    Positions are those a YAML parser reports as a node's start: a block mapping starts at
    its first key, a block sequence at its first '-', a scalar or empty collection where
    its text starts. The second copy of a duplicated key is recorded under `(*path, DUPLICATE)`.
    """
    out = Written("")
    lines: list[str] = []

    def here(col: int) -> tuple[int, int]:
        return (len(lines) + 1, col)

    def emit(value: Any, path: Path, indent: int, prefix: str) -> None:
        # `prefix` is text already on the current line ("key: ", "- "); "" starts a line at `indent`.
        base = len(prefix) if prefix else indent
        lead = prefix if prefix else " " * indent
        if isinstance(value, dict) and value:
            out.values[path] = here(base + 1)
            for k, v in value.items():
                for copy in range(2 if duplicate == (*path, k) else 1):
                    kpath = (*path, k)
                    out.keys[kpath if copy == 0 else (*kpath, DUPLICATE)] = here(base + 1)
                    if isinstance(v, (dict, list)) and v:
                        lines.append(f"{lead}{k}:")
                        emit(v, kpath, base + 2, "")
                    else:
                        emit(v, kpath, base + 2, f"{lead}{k}: ")
                    lead = " " * base
            return
        if isinstance(value, list) and value:
            out.values[path] = here(base + 1)
            for i, v in enumerate(value):
                emit(v, (*path, i), base + 2, lead + "- ")
                lead = " " * base
            return
        text = "{}" if isinstance(value, dict) else "[]" if isinstance(value, list) else scalar(value)
        out.values[path] = here(len(lead) + 1)
        lines.append(lead + text)

    emit(data, (), 0, "")
    out.text = "\n".join(lines) + "\n"
    return out


DUPLICATE = "#duplicate"
