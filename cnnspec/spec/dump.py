"""Write a validated spec back to YAML (for the run directory's resolved spec)."""

from __future__ import annotations

import io
from typing import Any

from cnnspec.spec.model import Spec


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def spec_data(spec: Spec) -> dict[str, Any]:
    """The spec as plain data, defaults included so the run records exactly what was used.

    Expressions are written back as they were (`${64 * width}`), beside the vars they read, so a
    `--set vars.width=…` on the recorded spec changes every layer that depends on it."""
    data = _plain(spec.model_dump(mode="json", exclude_none=True))
    for path, text in spec._evaluated.items():
        node: Any = data
        for key in path[:-1]:
            node = _child(node, key)
        if _child(node, path[-1]) is not None:
            node[path[-1]] = text
    return data  # type: ignore[no-any-return]


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def dump_spec(spec: Spec) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined,assignment]
    buf = io.StringIO()
    yaml.dump(spec_data(spec), buf)
    return buf.getvalue()
