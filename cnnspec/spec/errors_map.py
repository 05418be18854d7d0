"""Turn pydantic validation errors into located, readable diagnostics."""

from __future__ import annotations

import types
import typing
from collections.abc import Hashable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from cnnspec.errors import Diagnostic, suggest
from cnnspec.spec.source import SourceMap


def yaml_path(data: Any, loc: Sequence[Hashable]) -> tuple[Hashable, ...]:
    """Follow a pydantic `loc` through the raw data, skipping union tags that are not keys."""
    path: list[Hashable] = []
    node = data
    for elem in loc:
        if isinstance(node, dict) and elem in node:
            node = node[elem]
            path.append(elem)
        elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
            node = node[elem]
            path.append(elem)
        # else: a discriminator tag or a model-level error: stay on this node
    return tuple(path)


def _members(tp: Any) -> list[Any]:
    """Expand Annotated, unions and Optional into the concrete types they allow."""
    out: list[Any] = []
    stack = [tp]
    while stack:
        t = stack.pop()
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            stack.append(typing.get_args(t)[0])
        elif origin is typing.Union or origin is types.UnionType:
            stack.extend(typing.get_args(t))
        else:
            out.append(t)
    return out


def fields_at(root: type[BaseModel], loc: Sequence[Hashable]) -> list[str]:
    """Names of the keys a mapping at `loc` accepts (for 'did you mean' hints)."""
    candidates: list[Any] = [root]
    for elem in loc:
        nxt: list[Any] = []
        for tp in candidates:
            for t in _members(tp):
                origin = typing.get_origin(t)
                if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(elem, str) and elem in t.model_fields:
                    nxt.append(t.model_fields[elem].annotation)
                elif origin is list and isinstance(elem, int):
                    nxt.append(typing.get_args(t)[0])
                elif origin is dict and isinstance(elem, str):
                    nxt.append(typing.get_args(t)[1])
        if nxt:
            candidates = nxt
    names: list[str] = []
    for tp in candidates:
        for t in _members(tp):
            if isinstance(t, type) and issubclass(t, BaseModel):
                names += [n for n in t.model_fields if n not in names]
    return names


def _dotted(loc: Sequence[Hashable]) -> str:
    out = ""
    for elem in loc:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += ("." if out else "") + str(elem)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def diagnostics_from(
    exc: ValidationError, data: Any, source: SourceMap, root: type[BaseModel], prefix: Sequence[Hashable] = ()
) -> list[Diagnostic]:
    """Located diagnostics for every error of a pydantic validation of `data`."""
    from cnnspec.layers import REGISTRY
    from cnnspec.spec.model import AUGMENTS

    out: list[Diagnostic] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = yaml_path(data, loc)
        full = tuple(prefix) + path
        kind = err["type"]
        value = err.get("input")
        where = _dotted(full) or "the spec"
        hint = None
        if kind == "extra_forbidden":
            key = loc[-1]
            valid = fields_at(root, loc[:-1])
            message = f"unknown key '{key}' in {_dotted(tuple(prefix) + path[:-1]) or 'the spec'}"
            hint = suggest(str(key), valid) or (f"valid keys: {', '.join(valid)}" if valid else None)
            location = source.locate(full, key=True)
        elif kind in ("layer_kind", "augment_kind"):
            names = REGISTRY if kind == "layer_kind" else AUGMENTS
            what = "layer kind" if kind == "layer_kind" else "augmentation"
            if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value)), str):
                name = next(iter(value))
                message = f"unknown {what} '{name}'"
                hint = suggest(name, list(names)) or f"known: {', '.join(sorted(names))}"
                location = source.locate(full + (name,), key=True)
            else:
                message = f"{where}: {err['msg']}, got {_short(value)}"
                location = source.locate(full)
        elif kind == "missing":
            message = f"missing required key '{loc[-1]}' in {_dotted(tuple(prefix) + path) or 'the spec'}"
            location = source.locate(full)
        else:
            msg = err["msg"]
            msg = msg[0].lower() + msg[1:]
            message = f"{where}: {msg}, got {_short(value)}"
            if kind == "literal_error" and isinstance(value, str):
                expected = err.get("ctx", {}).get("expected", "")
                options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",")]
                hint = suggest(value, options)
            location = source.locate(full)
        out.append(Diagnostic(message, location, hint=hint))
    return out
