"""Turn pydantic validation errors into located, readable diagnostics.

pydantic reports one error per failed union branch and per missing key; a person wants
one message per mistake. So: errors of the branches of one union are merged into one
("expected an integer or a list, got 'foo'"); a branch that failed deeper than its type
wins over the branches whose type did not match; and a missing key that an unknown key
is a misspelling of is not reported twice.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from cnnspec.errors import Diagnostic, Location, shown, suggested_name
from cnnspec.spec.dispatch import FAMILIES, OneKeyItem
from cnnspec.spec.mistakes import glued_key, inline_params, name_mapping, scalar_params
from cnnspec.spec.source import SourceMap

Path = tuple[Hashable, ...]

# Error types that mean "this value is not of the branch's type" (as opposed to
# "it is, but breaks a constraint"), with how to say what was expected.
_TYPE_ERRORS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
    "literal_error": None,  # said from the error's context: one of 'a', 'b'
}


_NOT_BRANCH = frozenset({"missing", "extra_forbidden", "layer_kind", "augment_kind"})


def _walk(data: Any, loc: Sequence[Hashable]) -> tuple[Path, int, Any]:
    """The YAML path of `loc`, how many elements of `loc` it took (tags in between count), and the node."""
    path: list[Hashable] = []
    node = data
    used = 0
    for n, elem in enumerate(loc):
        in_dict = isinstance(node, dict) and elem in node
        in_list = isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node)
        if not (in_dict or in_list):
            continue  # a union tag or a model-level error: stay on this node
        node = node[elem]
        path.append(elem)
        used = n + 1
    return tuple(path), used, node


def _members(tp: Any) -> list[Any]:
    """Expand Annotated, unions and Optional into the concrete types (or OneKeyItem markers) they allow."""
    out: list[Any] = []
    stack = [tp]
    while stack:
        t = stack.pop()
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            args = typing.get_args(t)
            marker = next((m for m in args[1:] if isinstance(m, OneKeyItem)), None)
            stack.append(marker if marker is not None else args[0])
        elif origin is typing.Union or origin is types.UnionType:
            stack.extend(typing.get_args(t))
        else:
            out.append(t)
    return out


def fields_at(root: type[BaseModel], loc: Sequence[Hashable]) -> list[str]:
    """Names of the keys a mapping at `loc` accepts (for 'did you mean' hints)."""
    names: list[str] = []
    for model in models_at(root, loc):
        names += [n for n in model.model_fields if n not in names]
    return names


def models_at(root: type[BaseModel], loc: Sequence[Hashable]) -> list[type[BaseModel]]:
    """The models a mapping at `loc` may be (the members of a union, a kind's parameters)."""
    candidates: list[Any] = [root]
    for elem in loc:
        nxt: list[Any] = []
        for tp in candidates:
            for t in _members(tp):
                origin = typing.get_origin(t)
                if isinstance(t, OneKeyItem):
                    # `{NAME: PARAMS}`: stepping into NAME reaches NAME's parameter model.
                    if isinstance(elem, str) and elem in t.kinds.classes:
                        nxt.append(t.kinds.classes[elem])
                elif isinstance(t, type) and issubclass(t, BaseModel) and isinstance(elem, str):
                    if not t.__pydantic_fields_complete__:
                        t.model_rebuild()  # deferred: its annotations are still forward references
                    if elem in t.model_fields:
                        nxt.append(t.model_fields[elem].annotation)
                elif origin is list and isinstance(elem, int):
                    nxt.append(typing.get_args(t)[0])
                elif origin is dict and isinstance(elem, str):
                    nxt.append(typing.get_args(t)[1])
        if nxt:
            candidates = nxt
    models: list[type[BaseModel]] = []
    for tp in candidates:
        for t in _members(tp):
            if isinstance(t, type) and issubclass(t, BaseModel) and t not in models:
                models.append(t)
    return models


def dotted(loc: Sequence[Hashable]) -> str:
    """model.layers[3].conv2d: a path as people read it."""
    out = ""
    for elem in loc:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += ("." if out else "") + str(elem)
    return out


def yaml_repr(value: Any) -> str:
    """A value as it would be written in YAML (true, null, 'text', [1, 2]), at most 60 characters."""
    if value is True or value is False:
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, list):
        text = "[" + ", ".join(yaml_repr(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {yaml_repr(v)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _got(value: Any) -> str:
    """', got VALUE' for values short enough to help; mappings and long lists are left out."""
    if isinstance(value, dict) or (isinstance(value, list) and len(repr(value)) > 60):
        return ""
    return f", got {yaml_repr(value)}"


def _lower(msg: str) -> str:
    msg = msg.removeprefix("Value error, ").replace(" after validation", "")
    return msg[:1].lower() + msg[1:]


def _constraint(where: str, msg: str) -> str:
    """A broken constraint, said of the field: pydantic's "Input should be greater than 0" names no field,
    and in a CNN tool "input" reads as the model's input; `model.input.width should be greater than 0`."""
    text = _lower(msg)
    if text.startswith("input should "):
        return f"{where} {text.removeprefix('input ')}"
    return f"{where}: {text}"


def _expected(err: dict[str, Any]) -> str:
    if err["type"] == "literal_error":
        return f"one of {err.get('ctx', {}).get('expected', '')}"
    return _TYPE_ERRORS[err["type"]] or _lower(err["msg"])


def diagnostics_from(
    exc: ValidationError,
    data: Any,
    source: SourceMap,
    root: type[BaseModel],
    prefix: Sequence[Hashable] = (),
    *,
    strip: int = 0,
    skip: Collection[Path] = (),
) -> list[Diagnostic]:
    """Located diagnostics for every error of a pydantic validation of `data`.

    `prefix` is prepended to each YAML path (for both the message and `source`), after
    dropping the first `strip` elements of the path: a block's layers validated as
    `{group: {layers: ...}}` map back to `model.blocks.NAME.layers`. Errors at a path in
    `skip` are left out (their value was reported already).
    """
    found: list[_Found] = []
    for err in exc.errors():
        path, used, node = _walk(data, err["loc"])
        if path in skip:
            continue
        full = tuple(prefix) + path[strip:]
        # An error of one branch of a union: its loc goes on past the YAML path with a tag.
        branch = err["type"] not in _NOT_BRANCH and used < len(err["loc"])
        found.append(_Found(dict(err), path, full, node, used, branch))

    below = {f.path[:i] for f in found for i in range(len(f.path))}
    misspelt: dict[Path, set[str]] = {}
    for f in found:
        if f.err["type"] == "extra_forbidden":
            close = _meant_key(str(f.err["loc"][-1]), fields_at(root, f.err["loc"][:-1]))[0]
            if close:
                misspelt.setdefault(f.path[:-1], set()).add(close)

    out: list[Diagnostic | Path] = []
    branches: dict[Path, list[_Found]] = {}
    for f in found:
        if f.err["type"] == "missing" and str(f.err["loc"][-1]) in misspelt.get(f.path, set()):
            continue  # reported once, as the unknown key that misspells it
        if f.branch:
            if f.path in below:
                continue  # another branch had the right type and failed inside: its error is the one
            if f.path not in branches:
                branches[f.path] = []
                out.append(f.path)
            branches[f.path].append(f)
            continue
        out.append(_one(f, source, root, prefix, strip))
    return [_merge(branches[d], source) if isinstance(d, tuple) else d for d in out]


@dataclass(frozen=True)
class _Found:
    err: dict[str, Any]
    path: Path  # in the validated data
    full: Path  # in the file
    node: Any  # the value at `path`
    used: int  # elements of err["loc"] that `path` took
    branch: bool


def _merge(found: list[_Found], source: SourceMap) -> Diagnostic:
    first = found[0]
    value = first.err.get("input")
    where = dotted(first.full) or "the spec"
    location = source.locate(first.full)
    # A branch of the right type that broke a constraint says more than the branches of other types.
    constraint = [f for f in found if f.err["type"] not in _TYPE_ERRORS]
    if constraint:
        return Diagnostic(f"{_constraint(where, constraint[0].err['msg'])}{_got(value)}", location)
    expected: list[str] = []
    for f in found:
        text = _expected(f.err)
        if text not in expected:
            expected.append(text)
    said = expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
    literal = next((f.err for f in found if f.err["type"] == "literal_error"), None)
    close = _literal_suggestion(literal, value) if literal is not None and isinstance(value, str) else None
    hint = None if close else _number_hint(said, value)
    return Diagnostic(f"{where}: expected {said}{_got(value)}", location, hint=hint, suggestion=close)


# YAML 1.1's base-60 integers (`1:30` is 90): text in YAML 1.2, which cnnspec reads.
_SEXAGESIMAL = re.compile(r"^[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+$")


def _number_hint(expected: str, value: Any) -> str | None:
    """For a number field given `1:30`: why it is text here although older YAML tools read it as a number."""
    if "integer" not in expected and "number" not in expected:
        return None
    if not (isinstance(value, str) and _SEXAGESIMAL.match(value)):
        return None
    total = 0
    for part in value.lstrip("+-").replace("_", "").split(":"):
        total = total * 60 + int(part)
    sign = "-" if value.startswith("-") else ""
    return (
        f"YAML 1.1 tools read '{value}' as the base-60 number {sign}{total}; cnnspec reads YAML 1.2, where it is "
        f"text: write {sign}{total}"
    )


def _meant_key(key: str, valid: Sequence[str]) -> tuple[str | None, str | None]:
    """The valid key an unknown one meant and the hint that says so: `kernel_size:2` (no space after the
    colon) means `kernel_size` with a value; another key is a misspelling (`suggested_name`)."""
    glued = glued_key(key, valid)
    if glued is not None:
        return glued
    return suggested_name(key, valid), None


def _mapping_hint(root: type[BaseModel], loc: Sequence[Hashable], full: Path, value: Any) -> str | None:
    """For a value where a mapping goes: the mapping it meant (`- dropout: 0.2` → `{p: 0.2}`,
    `schedule: cosine` → `{name: cosine}`)."""
    models = models_at(root, loc)
    if full and isinstance(full[-1], str):
        for family in FAMILIES.values():
            if family.classes.get(full[-1]) in models:
                return scalar_params(full[-1], value, family)
        return name_mapping(full[-1], value, models)
    return None


def _literal_suggestion(err: dict[str, Any], value: str) -> str | None:
    expected = err.get("ctx", {}).get("expected", "")
    options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",")]
    return suggested_name(value, options)


# What to write for a required key whose form a newcomer cannot guess from its name.
MISSING_HINTS: dict[tuple[Hashable, ...], str] = {
    ("model", "input"): "add the image shape, channels first, e.g. input: {channels: 3, height: 32, width: 32}",
    ("model", "layers"): "add the list of layers, one a line: `layers:`, then "
    "`- conv2d: {out_channels: 16, kernel_size: 3}`",
}


def _one(f: _Found, source: SourceMap, root: type[BaseModel], prefix: Sequence[Hashable], strip: int) -> Diagnostic:
    err, full = f.err, f.full
    kind = err["type"]
    loc = tuple(err["loc"])
    value = err.get("input")
    ctx = err.get("ctx") or {}
    where = dotted(full) or "the spec"
    hint = None
    suggestion = None  # the name a misspelt key or value most likely meant
    location: Location
    if kind == "spec_rule":  # a model's own rule (cnnspec.spec.model.SPEC_RULE): its message as written
        message, hint = err["msg"], ctx.get("hint")
        location = source.locate(full)
    elif kind == "extra_forbidden":
        key = loc[-1]
        valid = fields_at(root, loc[:-1])
        message = f"unknown key {shown(key)} in {dotted(full[:-1]) or 'the spec'}"
        suggestion, hint = _meant_key(str(key), valid)
        if hint is not None:
            suggestion = None  # the key is right: the fix is how it is written
        elif suggestion is None and valid:
            hint = f"valid keys: {', '.join(valid)}"
        if key == "activation" and "inputs" in valid:  # Keras' Conv2D(..., activation="relu")
            after = f"`- {value}`" if isinstance(value, str) else "an activation layer (`- relu`)"
            suggestion, hint = None, f"activations are layers of their own: add {after} after this one"
        location = source.locate(full, key=True)
    elif kind in FAMILIES:
        names, what = FAMILIES[kind].classes, FAMILIES[kind].what
        name = ctx.get("name")
        if name is not None:
            message = f"unknown {what} {shown(name)}"
            written = str(name)
            if isinstance(value, dict) and not isinstance(value.get(name), dict | list | None):
                written = f"{name}={value[name]}"  # `- dropout p: 0.2`: the key is `dropout p`
            hint = inline_params(written, FAMILIES[kind])
            suggestion = None if hint else suggested_name(str(name), list(names))
            if hint is None and suggestion is None:
                hint = f"known: {', '.join(sorted(names))}"
            location = source.locate((*full, name), key=True) if isinstance(value, dict) else source.locate(full)
        elif isinstance(value, dict) and value:
            keys = list(value)
            message = f"{where}: {err['msg']}; this item has {len(keys)} keys: {', '.join(map(str, keys))}"
            hint = "write each one as its own list item"
            if value[keys[0]] is None and isinstance(keys[0], str):
                # `- conv2d:` with its parameters on the next lines at the same indentation
                hint = f"indent the parameters of `{keys[0]}` two spaces more than `{keys[0]}:` itself"
            location = source.locate(full)
        else:
            message = f"{where}: {err['msg']}{_got(value)}"
            location = source.locate(full)
    elif kind == "string_pattern_mismatch" and loc and loc[-1] in ("id", "shortcut_id", "prefix"):
        message = f"{where}: an id may hold only letters, digits, '_' and '-' (not first){_got(value)}"
        hint = "ids name modules in state_dict and ONNX: write e.g. conv_1 or block1-0"
        if loc[-1] == "prefix":
            message = (
                f"{where}: a repeat's copies are named PREFIX + index, so the prefix is the start of an id{_got(value)}"
            )
        location = source.locate(full)
    elif kind == "missing":
        at = full
        if isinstance(f.node, str) and f.used < len(loc) - 1 and loc[f.used] == f.node:
            at = (*full, f.node)  # a bare `- NAME` item: say which NAME lacks the key
        message = f"missing required key '{loc[-1]}' in {dotted(at) or 'the spec'}"
        hint = MISSING_HINTS.get((*full, loc[-1]))
        location = source.locate(full)
    elif kind in _TYPE_ERRORS:
        message = f"{where}: expected {_expected(err)}{_got(value)}"
        if kind == "literal_error" and isinstance(value, str):
            suggestion = _literal_suggestion(err, value)
        elif full == ("model", "input") and isinstance(value, list):
            hint = "write the image shape as a mapping: {channels: C, height: H, width: W}"
        elif _expected(err) == "a mapping":
            hint = _mapping_hint(root, loc, full, value)
        else:
            hint = _number_hint(_expected(err), value)
        location = source.locate(full)
    else:
        message = f"{_constraint(where, err['msg'])}{_got(value)}"
        location = source.locate(full)
    return Diagnostic(message, location, hint=hint, suggestion=suggestion)
