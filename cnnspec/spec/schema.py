"""The JSON Schema of the spec, generated from the pydantic models.

Editors (VS Code's YAML extension) use it for completion and hover docs when a spec
starts with `# yaml-language-server: $schema=../schemas/cnnspec.schema.json`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from cnnspec.augments import AUGMENT_KINDS
from cnnspec.layers import LAYER_KINDS
from cnnspec.spec.model import Spec

SCHEMA_ID = "https://cnnspec.dev/schemas/cnnspec.schema.json"
REF = "#/$defs/{model}"


def _one_key_items(refs: list[str], bare: list[str], what: str) -> dict[str, Any]:
    return {
        "description": f"A {what}: `- NAME: {{PARAMS}}`, or a bare `- NAME` when every parameter has a default.",
        "anyOf": [
            {"enum": bare, "description": f"A {what} that needs no parameters."},
            {"oneOf": [{"$ref": REF.format(model=r)} for r in refs]},
        ],
    }


EXPRESSION = {
    "type": "string",
    "pattern": r"^\$([A-Za-z_][A-Za-z0-9_]*|\{.*\})$",
    "description": "An expression in place of a number: $NAME or ${EXPRESSION} over vars and block parameters "
    "(+ - * / // %, parentheses, min, max, round, floor, ceil, int, abs, make_divisible).",
}
_NUMBER_KEYWORDS = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _with_expressions(node: Any) -> Any:
    """Every integer or number in the schema also accepts an expression string; the properties, their
    descriptions and defaults stay where editors look for them."""
    if isinstance(node, list):
        return [_with_expressions(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _with_expressions(v) for k, v in node.items()}
    expression = {"$ref": REF.format(model="Expression")}
    if out.get("type") in ("integer", "number"):
        number = {k: out.pop(k) for k in _NUMBER_KEYWORDS if k in out}
        out["anyOf"] = [number, expression]
    elif "anyOf" in out:  # int | float, int | list: one list of choices with the expression once, last
        flat: list[Any] = []
        for choice in out["anyOf"]:
            inner = choice["anyOf"] if isinstance(choice, dict) and set(choice) == {"anyOf"} else [choice]
            flat += [c for c in inner if c not in flat]
        if expression in flat:
            flat = [c for c in flat if c != expression] + [expression]
        out["anyOf"] = flat
    return out


def json_schema(*, expressions: bool = True) -> dict[str, Any]:
    """The spec's JSON Schema (draft 2020-12); `expressions=False` leaves out the expression strings
    that every number also accepts (the reference tables list the number types alone)."""
    kinds = sorted(LAYER_KINDS.classes)
    layer_wrappers = [LAYER_KINDS.wrapper(k) for k in kinds]
    augment_names = list(AUGMENT_KINDS.classes)  # in the order they are registered
    augment_wrappers = [AUGMENT_KINDS.wrapper(n) for n in augment_names]
    models = [(Spec, "validation"), *((w, "validation") for w in layer_wrappers + augment_wrappers)]
    _, combined = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    defs: dict[str, Any] = combined["$defs"]
    root = defs.pop("Spec")
    defs["LayerItem"] = _one_key_items([w.__name__ for w in layer_wrappers], LAYER_KINDS.bare(), "layer")
    defs["AugmentItem"] = _one_key_items(
        [w.__name__ for w in augment_wrappers], AUGMENT_KINDS.bare(), "training augmentation"
    )
    if expressions:
        root, defs = _with_expressions(root), _with_expressions(defs)
        defs["Expression"] = EXPRESSION
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def json_schema_text() -> str:
    """The JSON Schema as the text checked in at schemas/cnnspec.schema.json; raises PluginError when an
    installed plugin could not be loaded (a schema without its kinds would tell editors they are unknown)."""
    from cnnspec.layers.plugins import refuse_problems

    refuse_problems()
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
