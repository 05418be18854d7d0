"""The JSON Schema of the spec, generated from the pydantic models.

Editors (VS Code's YAML extension) use it for completion and hover docs when a spec
starts with `# yaml-language-server: $schema=../schemas/cnnspec.schema.json`.
"""

from __future__ import annotations

import json
from typing import Any

from cnnspec.spec.layers import BARE_KINDS
from cnnspec.spec.model import BARE_AUGMENTS, Spec

SCHEMA_ID = "https://cnnspec.dev/schemas/cnnspec.schema.json"


def _allow_bare(node: Any, bare_layers: list[str], bare_augments: list[str]) -> Any:
    """Let a layer (augmentation) list item also be a bare name, as the loader accepts."""
    if isinstance(node, dict):
        out = {k: _allow_bare(v, bare_layers, bare_augments) for k, v in node.items()}
        one_of = out.get("oneOf")
        if isinstance(one_of, list) and "discriminator" not in out and one_of and all("$ref" in o for o in one_of):
            refs = [o["$ref"] for o in one_of]
            if any(r.endswith("Layer") for r in refs):
                return {"anyOf": [{"enum": bare_layers, "description": "A layer kind that needs no parameters."}, out]}
            if any(r.endswith("Augment") for r in refs):
                return {"anyOf": [{"enum": bare_augments, "description": "An augmentation with default parameters."}, out]}
        return out
    if isinstance(node, list):
        return [_allow_bare(v, bare_layers, bare_augments) for v in node]
    return node


def json_schema() -> dict[str, Any]:
    """The spec's JSON Schema (draft 2020-12)."""
    schema = Spec.model_json_schema(mode="validation")
    schema = _allow_bare(schema, BARE_KINDS, BARE_AUGMENTS)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
