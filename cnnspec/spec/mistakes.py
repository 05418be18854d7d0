"""Mistakes of YAML form that read like another mistake, recognised so that the message says the real fix.

Each function takes what the schema refused and returns the fix, written out, or None when the
input is not that mistake. `cnnspec.spec.errors_map` asks them before it falls back to a
"did you mean" suggestion, which for these would point somewhere else:

- `- dropout 0.2`, `- dropout(0.2)`, `- dropout p=0.2`: a kind and its parameters on one line, read
  by YAML as one string (the closest kind name would be `dropout2d`); `- dropout: 0.2`: a value
  where the parameter mapping goes. The fix is `- dropout: {p: 0.2}`.
- `{kernel_size:2}`, `{p=0.2}`: YAML reads `kernel_size:2` as one key (a flow mapping's colon
  needs a space after it); the fix is `kernel_size: 2`, not the key `kernel_size`.
- `schedule: cosine`: a name where a mapping with a `name` goes; the fix is `{name: cosine}`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from cnnspec.spec.dispatch import KindRegistry

# `NAME REST`, `NAME(REST)`, `NAME=REST`: a kind's name, then its parameters on the same line.
_INLINE = re.compile(r"^\s*([A-Za-z][\w-]*)\s*(?:\((?P<call>.*)\)|[\s=]+(?P<rest>\S.*?))\s*$", re.DOTALL)
# `KEY:VALUE` or `KEY=VALUE` as one key.
_GLUED = re.compile(r"^([A-Za-z_][\w-]*)\s*(?::|=)\s*(\S.*?)\s*$", re.DOTALL)


def glued_key(key: str, valid: Sequence[str]) -> tuple[str, str] | None:
    """(`kernel_size`, the hint) for a key `kernel_size:2` or `kernel_size=2` whose part before ':'
    or '=' is a valid key; None for any other key."""
    match = _GLUED.match(key)
    if match is None or match.group(1) not in valid:
        return None
    name, value = match.groups()
    if key[len(name) :].lstrip().startswith("="):
        return name, f"a key and its value are written `KEY: VALUE`: write `{name}: {value}`"
    return name, f"YAML needs a space after the colon: write `{name}: {value}`"


def inline_params(text: str, family: KindRegistry[Any]) -> str | None:
    """The hint for a kind written with its parameters in one string (`dropout 0.2`): the item as it is
    written (`- dropout: {p: 0.2}`); None when `text` does not start with a kind's name."""
    from cnnspec.errors import suggested_name

    match = _INLINE.match(text)
    if match is None:
        return None
    word = match.group(1)
    kind = word if word in family.classes else suggested_name(word, list(family.classes))
    if kind is None:
        return None
    rest = match.group("call") if match.group("call") is not None else match.group("rest")
    rest = re.sub(r"\s*[:=]\s*", "=", rest)  # `p: 0.2`, `p = 0.2` → `p=0.2`, then split at commas and spaces
    parts = [p for p in re.split(r"[,\s]+(?![^\[]*\])", rest) if p]
    return _item_hint(kind, family, parts)


def scalar_params(kind: str, value: Any, family: KindRegistry[Any]) -> str | None:
    """The hint for `- dropout: 0.2`: a kind given one value where its parameter mapping goes."""
    if kind not in family.classes or isinstance(value, dict | list) or value is None:
        return None
    return _item_hint(kind, family, [_yaml_scalar(value)])


def _item_hint(kind: str, family: KindRegistry[Any], parts: list[str]) -> str:
    cls = family.classes[kind]
    own = [name for name in cls.model_fields if name not in family.kind_base.model_fields]
    if not own:
        return f"{kind} takes no parameters: write `- {kind}`"
    required = [name for name in own if cls.model_fields[name].is_required()]
    given: list[tuple[str | None, str]] = []  # (the parameter, or None for a value without one, the value)
    for part in parts:
        glued = _GLUED.match(part)
        given.append((glued.group(1), glued.group(2)) if glued is not None and glued.group(1) in own else (None, part))
    positional = [value for name, value in given if name is None]
    taken = {name for name, _ in given}
    # Values without a name go to the required parameters when they are as many, else to the only one.
    free = [n for n in (required if len(required) == len(positional) else own) if n not in taken]
    names = iter(free if len(free) == len(positional) else ["PARAM"] * len(positional))
    named = [(name if name is not None else next(names), value) for name, value in given]
    body = ", ".join(f"{name}: {value}" for name, value in named)
    fields = f" ({kind}'s parameters: {', '.join(own)})" if any(n == "PARAM" for n, _ in named) else ""
    return f"parameters go in a mapping after the name and a colon: write `- {kind}: {{{body}}}`{fields}"


def _yaml_scalar(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def name_mapping(key: str, value: Any, models: Sequence[type[BaseModel]]) -> str | None:
    """The hint for `schedule: cosine`: a string where a mapping with a `name` goes, when the mapping
    `{name: VALUE}` is valid there; None otherwise."""
    if not isinstance(value, str):
        return None
    for model in models:
        if "name" not in model.model_fields:
            continue
        try:
            model.model_validate({"name": value})
        except ValidationError:
            continue
        return f"a {key} is a mapping: write `{key}: {{name: {value}}}`"
    return None
