"""The resolved spec as flat hyperparameters (`optimizer.lr`, `train.epochs`, `vars.width`), for the trackers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnspec.spec.model import Spec

Scalar = str | int | float | bool

# A value longer than this is cut (MLflow refuses long parameter values; a table cell is no place for it).
MAX_VALUE_CHARS = 250


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted keys; lists of mappings by index (`data.augment.0.random_crop.size`)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out if out or not prefix else {prefix: {}}
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        out = {}
        for index, item in enumerate(value):
            out |= flatten(item, f"{prefix}.{index}")
        return out
    return {prefix: value}


def hyperparameters(spec: Spec) -> dict[str, Any]:
    """Every setting of the resolved spec outside `model:` (its defaults included), flattened; `model:` is
    the architecture, which `model.input.*` and the spec file (an artifact, or `cnnspec diff`) say."""
    data = spec.model_dump(mode="json", exclude={"model", "description"})
    data["model"] = {"input": spec.model.input.model_dump(mode="json")}
    return flatten(data)


def scalar(value: Any) -> Scalar:
    """A value as a tracker records it: numbers and booleans as they are, anything else as short text."""
    if isinstance(value, bool | int | float):
        return value
    text = "null" if value is None else value if isinstance(value, str) else _text(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _text(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": "))
