"""The JSON Schema of the spec, generated from the pydantic models.

Editors (VS Code's YAML extension, any client of yaml-language-server) use it for completion,
hovers and diagnostics when a spec starts with
`# yaml-language-server: $schema=../schemas/cnnspec.schema.json` (docs/spec-language.md, "Editor
support"). What it does for them, and why:

- No field titles, and a mapping's title is its name in the spec (`optimizer`, `conv2d`), never
  its class's: yaml-language-server heads a hover with the title (`Kernel Size`, or `Kernel Size ||
  Kernel Size` for a key with alternatives) and names a definition without one by its `$defs` key.
  The root has no title (the server would head every hover with it).
- Every key has a `markdownDescription`: its description, type and default (`**type** int > 0 ·
  **default** `1``), which hovers and completion show.
- A layer (and an augmentation) is one definition: a string is one of the kinds that may be
  written bare, a mapping has one key among all the kinds, each key's value the kind's parameters.
  Completion in a layer list then offers each kind once, by its name; a mistyped kind is refused
  with the list of every kind (`errorMessage`, which yaml-language-server shows instead of its own).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from cnnspec.augments import AUGMENT_KINDS
from cnnspec.layers import LAYER_KINDS
from cnnspec.spec.dispatch import Kind, KindRegistry
from cnnspec.spec.model import Spec
from cnnspec.spec.schema_words import ITEM_WORDS, default_of, type_of

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.json_schema import JsonSchemaMode, JsonSchemaValue
    from pydantic_core import CoreSchema, core_schema

SCHEMA_ID = "https://cnnspec.dev/schemas/cnnspec.schema.json"
REF = "#/$defs/{model}"

EXPRESSION = {
    "title": "expression",
    "type": "string",
    "pattern": r"^\$([A-Za-z_][A-Za-z0-9_]*|\{.*\})$",
    # No description: a hover over `lr: $lr` shows lr's (yaml-language-server takes the innermost one).
    "patternErrorMessage": "Not a number or an expression: $NAME or ${EXPRESSION} over vars and block parameters "
    "(+ - * / // %, parentheses, min, max, round, floor, ceil, int, abs, make_divisible).",
}
_NUMBER_KEYWORDS = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def schema_title(cls: type[BaseModel]) -> str | None:
    """What a mapping is called in the spec: a kind's name (`conv2d`), a section's path (`train.unfreeze`), or
    None (the spec itself, a plugin's nested model)."""
    if issubclass(cls, Kind):
        return cls.kind
    return getattr(cls, "SCHEMA_TITLE", None)


class SpecJsonSchema(GenerateJsonSchema):
    """pydantic's generator with the titles an editor shows: none on fields, and a model's title is its
    `schema_title` (or none), not its class's name."""

    def field_title_should_be_set(self, schema: CoreSchema | core_schema.ModelField | Any) -> bool:
        return False

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        title = schema_title(schema["cls"])
        if title is None:
            json_schema.pop("title", None)
        else:
            json_schema["title"] = title
        return json_schema


def _first_line(text: str | None, fallback: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else fallback


def _item_definition(kinds: KindRegistry[Any], refs: dict[str, str]) -> dict[str, Any]:
    """`- NAME` (a kind that may be written bare) or `- NAME: {PARAMS}` (any kind), over `refs`: each kind's
    definition name."""
    what = kinds.what
    names = sorted(kinds.classes)
    bare = kinds.bare()
    needs = [n for n in names if n not in bare]
    listed = f"The {what}s: {', '.join(names)}."
    string: dict[str, Any] = {"enum": names, "errorMessage": f"Unknown {what}. {listed}"}
    if needs:
        string["if"] = {"enum": needs}
        string["then"] = {
            "type": "object",
            "errorMessage": f"This {what} needs parameters: write `- NAME: {{PARAMS}}`. Only these may be written "
            f"bare: {', '.join(bare)}.",
        }
    properties: dict[str, Any] = {}
    for name in names:
        cls = kinds.classes[name]
        about = _first_line(cls.__doc__, name)
        written = f" May be written bare: `- {name}`." if name in bare else ""
        properties[name] = {
            "$ref": REF.format(model=refs[name]),
            "description": about,
            "markdownDescription": f"{about}{written}",
        }
    return {
        "title": ITEM_WORDS[kinds.definition],
        "description": f"A {ITEM_WORDS[kinds.definition]}: `- NAME: {{PARAMS}}`, or a bare `- NAME` when every "
        "parameter has a default.",
        "if": {"type": "string"},
        "then": string,
        "else": {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
            "propertyNames": {"enum": names, "errorMessage": f"Unknown {what}. {listed}"},
            "minProperties": 1,
            "maxProperties": 1,
        },
    }


def item_kinds(definition: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Of an item definition (`$defs.LayerItem`): each kind's definition name, and the kinds that may be
    written bare."""
    refs = {name: sub["$ref"].rsplit("/", 1)[-1] for name, sub in definition["else"]["properties"].items()}
    then = definition["then"]
    needs = set(then.get("if", {}).get("enum", ()))
    return refs, [name for name in then["enum"] if name not in needs]


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


def _takes_numbers(node: Any) -> bool:
    if isinstance(node, list):
        return any(_takes_numbers(n) for n in node)
    if not isinstance(node, dict):
        return False
    return node.get("type") in ("integer", "number") or any(
        _takes_numbers(v) for k, v in node.items() if k not in ("properties", "default")
    )


def _hover(prop: dict[str, Any], name: str, required: set[str], defs: dict[str, Any]) -> str:
    """A key's markdownDescription: what it is, its type and its default."""
    target = prop.get("$ref", "").rsplit("/", 1)[-1]
    about = prop.get("description") or (defs[target].get("description", "") if target else "")
    words = type_of(prop, lambda ref: ITEM_WORDS.get(ref, "mapping"))
    if _takes_numbers(prop):
        words += " (or a `$NAME` / `${…}` expression)"
    default = default_of(name, prop, required)
    default = "**required**" if default == "**required**" else f"**default** {'unset' if default == '—' else default}"
    return f"{' '.join(about.split())}\n\n**type** {words} · {default}"


def _add_hovers(mapping: dict[str, Any], defs: dict[str, Any]) -> None:
    required = set(mapping.get("required", []))
    for name, prop in mapping.get("properties", {}).items():
        if "markdownDescription" not in prop:
            prop["markdownDescription"] = _hover(prop, name, required, defs)


def _titled_choices(node: Any, defs: dict[str, Any]) -> Any:
    """The last choice of an `anyOf` whose choices all have neither title nor description gets its type as title.

    yaml-language-server's hover, when every choice of an anyOf "matches" the value (which a choice without
    title and description does, whatever the value), heads the hover with each choice's title or else the
    nearest mapping's (`conv2d || conv2d`) and drops the key's markdownDescription. One titled choice ends
    that; it is the last (`null` of `X | None`), so a hover is headed by it only for that value.
    (`type: [X, "null"]` instead of the anyOf would be simpler, but yaml-language-server 2.0 then offers no
    completion at all in a mapping around such a key.)
    """
    if isinstance(node, list):
        return [_titled_choices(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _titled_choices(v, defs) for k, v in node.items()}

    def blank(choice: dict[str, Any]) -> bool:
        target = defs.get(choice.get("$ref", "").rsplit("/", 1)[-1], choice)
        return not (target.get("title") or target.get("description"))

    choices = out.get("anyOf")
    if isinstance(choices, list) and len(choices) > 1 and all(blank(c) for c in choices):
        last = choices[-1]
        out["anyOf"] = [*choices[:-1], {"title": type_of(last).replace("`", "").replace("\\|", "|"), **last}]
    return out


def json_schema(*, editor: bool = True) -> dict[str, Any]:
    """The spec's JSON Schema (draft 2020-12), as editors read it: numbers also accept expression strings,
    alternatives are told apart in hovers. `editor=False`: the schema as the models
    state it (the reference tables list the number types alone)."""
    families = (LAYER_KINDS, AUGMENT_KINDS)
    classes = [kinds.classes[name] for kinds in families for name in sorted(kinds.classes)]
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Spec, "validation"), *((c, "validation") for c in classes)]
    keys, combined = models_json_schema(models, ref_template=REF, schema_generator=SpecJsonSchema)
    defs: dict[str, Any] = combined["$defs"]
    root = defs.pop("Spec")
    for kinds in families:
        refs = {name: keys[(cls, "validation")]["$ref"].rsplit("/", 1)[-1] for name, cls in kinds.classes.items()}
        defs[kinds.definition] = _item_definition(kinds, refs)
    for mapping in (root, *defs.values()):
        _add_hovers(mapping, defs)
    if editor:
        root, defs = _with_expressions(root), _with_expressions(defs)
        defs["Expression"] = EXPRESSION
        root, defs = _titled_choices(root, defs), _titled_choices(defs, defs)
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
