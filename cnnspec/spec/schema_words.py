"""A JSON Schema node's type and default in a few words (`int > 0`, `[int, int]`, `` `1` ``).

The editor hovers of the JSON Schema (cnnspec.spec.schema) and the reference tables of
docs/spec-language.md (cnnspec.render.spec_tables) both say a key's type and default this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnspec.layers.base import ID_PATTERN

# How a `$ref` to an item definition reads.
ITEM_WORDS = {"LayerItem": "layer", "AugmentItem": "augmentation"}


def below(name: str) -> str:
    """A `$ref` as the reference tables write it: the definition's table follows."""
    return ITEM_WORDS.get(name, f"{name} (below)")


def type_of(node: dict[str, Any], ref: Callable[[str], str] = below) -> str:
    """A JSON Schema node in a few words: `int > 0`, `[int, int]`, `'same' | 'valid'`; `ref` words a `$ref` by
    the definition's name."""
    if "$ref" in node:
        return ref(node["$ref"].rsplit("/", 1)[-1])
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    if "anyOf" in node:
        parts = [type_of(sub, ref) for sub in node["anyOf"]]
        return " or ".join(dict.fromkeys(parts))
    kind = node.get("type")
    if kind in ("integer", "number"):
        return _number(node, "int" if kind == "integer" else "number")
    if kind == "array":
        item = type_of(node.get("items", {}), ref)
        low, high = node.get("minItems"), node.get("maxItems")
        if low is not None and low == high and low <= 3:
            return "[" + ", ".join([item] * low) + "]"
        if item in ITEM_WORDS.values():
            return f"list of {item}s"
        return f"list of {item}" + (f" (at least {low})" if low else "")
    if kind == "string":
        if node.get("pattern") == ID_PATTERN:
            return "name (letters, digits, _, -)"
        return "string"
    return {"boolean": "bool", "null": "null", "object": "mapping"}.get(kind, "any")  # type: ignore[arg-type]


def _number(node: dict[str, Any], word: str) -> str:
    low, high = node.get("minimum"), node.get("maximum")
    xlow, xhigh = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if low is not None and high is not None:
        return f"{word} in [{low:g}, {high:g}]"
    bounds = []
    if xlow is not None:
        bounds.append(f"> {xlow:g}")
    if low is not None:
        bounds.append(f"≥ {low:g}")
    if xhigh is not None:
        bounds.append(f"< {xhigh:g}")
    if high is not None:
        bounds.append(f"≤ {high:g}")
    return f"{word} {', '.join(bounds)}".strip()


def default_of(name: str, node: dict[str, Any], required: set[str]) -> str:
    """The default of property `name` (`node`) of a mapping whose required keys are `required`: `**required**`,
    a value in backquotes, `—` (none: the key is unset), or what a default_factory makes."""
    if name in required:
        return "**required**"
    if "default" not in node:  # a default_factory: an empty collection, or a section's own defaults
        kind = node.get("type")
        return "`[]`" if kind == "array" else "`{}`" if kind == "object" else "all defaults"
    value = node["default"]
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:.4g}`"
    if isinstance(value, list):
        return "`[" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`"
    return f"`{value}`"
