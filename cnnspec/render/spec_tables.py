"""The field tables of docs/spec-language.md's reference section, written from the JSON Schema (so from the models).

    python -m cnnspec.render.spec_tables docs/spec-language.md    # rewrite the generated part

The part between the BEGIN/END markers is replaced; the rest of the file is prose.
tests/spec/test_reference_doc.py fails when it is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cnnspec.spec.schema_words import default_of, type_of

BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m cnnspec.render.spec_tables docs/spec-language.md) -->"
END = "<!-- END GENERATED REFERENCE -->"

# Sections of the reference: (heading, the schema definitions in it, in this order).
SECTIONS: list[tuple[str, list[str]]] = [
    ("Top level", ["Spec"]),
    ("`model`", ["ModelSpec", "InputSpec", "BlockSpec"]),
    ("`data`", ["DataSpec", "DatasetSpec", "Normalize"]),
    ("`optimizer`", ["OptimizerSpec"]),
    ("`schedule`", ["ScheduleSpec"]),
    ("`train`", ["TrainSpec", "EarlyStopping", "Unfreeze", "MlflowSettings"]),
    ("`export`", ["ExportSpec"]),
]
COMMON = ("id", "inputs")  # every layer kind has them; described once


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
        out.append(f"| `{name}` | {type_of(prop)} | {default_of(name, prop, required)} | {text} |")
    return out


def one_key_items(defs: dict[str, Any], definition: str, skip: tuple[str, ...]) -> list[str]:
    """A subsection per `- NAME: {...}` kind (layers, augmentations), alphabetically."""
    out: list[str] = []
    from cnnspec.spec.schema import item_kinds

    refs, bare = item_kinds(defs[definition])
    for name in sorted(refs):
        model = defs[refs[name]]
        out += ["", f"#### `{name}`", ""]
        about = " ".join(model.get("description", "").split())
        out.append(about + (" May be written bare: `- " + name + "`." if name in bare else ""))
        out.append("")
        out += table(model, defs, skip)
    return out


def reference_markdown() -> str:
    """The generated part of docs/spec-language.md."""
    from cnnspec.spec.schema import json_schema

    schema = json_schema(editor=False)
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
