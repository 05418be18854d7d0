"""The field tables of docs/spec-language.md's reference section, written from the JSON Schema (so from the models).

    python -m cnnspec.render.spec_tables docs/spec-language.md    # rewrite the generated part

The part between the BEGIN/END markers is replaced; the rest of the file is prose.
tests/spec/test_reference_doc.py fails when it is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cnnspec.layers.base import ID_PATTERN

BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m cnnspec.render.spec_tables docs/spec-language.md) -->"
END = "<!-- END GENERATED REFERENCE -->"

# Sections of the reference: (heading, the schema definitions in it, in this order).
SECTIONS: list[tuple[str, list[str]]] = [
    ("Top level", ["Spec"]),
    ("`model`", ["ModelSpec", "InputSpec", "BlockSpec"]),
    ("`data`", ["DataSpec", "DatasetSpec", "Normalize"]),
    ("`optimizer`", ["OptimizerSpec"]),
    ("`schedule`", ["ScheduleSpec"]),
    ("`train`", ["TrainSpec", "EarlyStopping", "Unfreeze"]),
    ("`export`", ["ExportSpec"]),
]
COMMON = ("id", "inputs")  # every layer kind has them; described once


def type_of(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """A JSON Schema node in a few words: `int > 0`, `[int, int]`, `'same' | 'valid'`."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return {"LayerItem": "layer", "AugmentItem": "augmentation"}.get(name, f"{name} (below)")
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    if "anyOf" in node:
        parts = [type_of(sub, defs) for sub in node["anyOf"]]
        return " or ".join(dict.fromkeys(parts))
    kind = node.get("type")
    if kind in ("integer", "number"):
        word = "int" if kind == "integer" else "number"
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
    if kind == "array":
        item = type_of(node.get("items", {}), defs)
        low, high = node.get("minItems"), node.get("maxItems")
        if low is not None and low == high and low <= 3:
            return "[" + ", ".join([item] * low) + "]"
        if item == "layer":
            return "list of layers"
        if item == "augmentation":
            return "list of augmentations"
        return f"list of {item}" + (f" (at least {low})" if low else "")
    if kind == "string":
        if node.get("pattern") == ID_PATTERN:
            return "name (letters, digits, _, -)"
        return "string"
    if kind == "boolean":
        return "bool"
    if kind == "null":
        return "null"
    if kind == "object":
        return "mapping"
    return "any"


def default_of(name: str, node: dict[str, Any], required: set[str]) -> str:
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


def table(definition: dict[str, Any], defs: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    props: dict[str, Any] = definition.get("properties", {})
    required = set(definition.get("required", []))
    rows = [(n, p) for n, p in props.items() if n not in skip]
    if not rows:
        return ["No parameters."]
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, prop in rows:
        target = prop.get("$ref", "").rsplit("/", 1)[-1]
        text = prop.get("description") or (defs[target].get("description", "") if target else "")
        text = " ".join(text.split()).replace("|", "\\|")
        out.append(f"| `{name}` | {type_of(prop, defs)} | {default_of(name, prop, required)} | {text} |")
    return out


def one_key_items(defs: dict[str, Any], definition: str, skip: tuple[str, ...]) -> list[str]:
    """A subsection per `- NAME: {...}` kind (layers, augmentations), alphabetically."""
    out: list[str] = []
    bare = set(defs[definition]["anyOf"][0]["enum"])
    wrappers = [o["$ref"].rsplit("/", 1)[-1] for o in defs[definition]["anyOf"][1]["oneOf"]]
    for wrapper in sorted(wrappers, key=lambda w: next(iter(defs[w]["properties"]))):
        name = next(iter(defs[wrapper]["properties"]))
        target = defs[wrapper]["properties"][name]["$ref"].rsplit("/", 1)[-1]
        model = defs[target]
        out += ["", f"#### `{name}`", ""]
        about = " ".join(model.get("description", "").split())
        out.append(about + (" May be written bare: `- " + name + "`." if name in bare else ""))
        out.append("")
        out += table(model, defs, skip)
    return out


def reference_markdown() -> str:
    """The generated part of docs/spec-language.md."""
    from cnnspec.spec.schema import json_schema

    schema = json_schema(expressions=False)
    defs: dict[str, Any] = schema["$defs"]
    out = [BEGIN, "", "## Reference", "", "Generated from the schema: every key, its type, default and meaning."]
    for heading, names in SECTIONS:
        out += ["", f"### {heading}"]
        for name in names:
            definition = schema if name == "Spec" else defs[name]
            if name != names[0]:  # the section's own mapping needs no heading of its own
                out += ["", f"#### {name}"]
            out += ["", " ".join(definition.get("description", "").split()), ""]
            out += table(definition, defs)
        if heading == "`data`":
            out += ["", "### Augmentations (`data.augment`)"]
            out += one_key_items(defs, "AugmentItem", ())
    out += ["", "### Layer kinds", ""]
    out.append(
        "Every kind also takes `id` (a name: letters, digits, `_`, `-`; a number; `self`) and `inputs` (a list of ids; "
        "default: the previous layer's output); see [Ids and inputs](#ids-and-inputs)."
    )
    out += one_key_items(defs, "LayerItem", COMMON)
    out += ["", END]
    return "\n".join(out) + "\n"


def rewrite(path: Path) -> bool:
    """Replace the generated part of `path`; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    new = text[:start] + reference_markdown() + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def generated_part(text: str) -> str:
    """The generated part of a document's text (markers included)."""
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    return text[start:end]


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}: {'updated' if rewrite(Path(arg)) else 'up to date'}")
