"""`cnnspec fmt`: one canonical layout for spec files, comments and blank-line groups kept.

The rules (docs/review.md has the long form):

- keys in the order the schema declares them: name, description, model, data,
  optimizer, schedule, train, export at the top; inside a layer `id`, `inputs`, then the
  kind's fields in their declared order; keys the schema does not know (block
  parameters, block args) keep their order;
- a layer is one line, `- KIND: {PARAMS}` (flow style), or a bare `- KIND` when it has no
  parameters; any other mapping or list of scalars is flow style too when it fits in
  WIDTH columns and holds no comment;
- block style for the sections that hold other sections or layer lists (model, data,
  model.blocks and each block), for every layer list and augmentation list, for sugar
  layers whose parameters hold a layer list (residual, repeat, group), and for any
  mapping with a comment or a blank line inside;
- two spaces per level, sequences indented under their key (`layers:` / `  - relu`);
- runs of blank lines become one; the header comments (`# yaml-language-server: ...`)
  stay first.

Formatting only moves text: scalars keep their source text, and the result is checked to
load to the same data with the same comments before it is returned.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cnnspec.review.tree import BLANK, Collection, Comment, Document, Entry, Node, Scalar, flow_safe, parse, scalar_text

WIDTH = 120
"""Longest line a flow collection may make (the project's line length)."""
INDENT = 2


# --- where each collection sits in the schema -------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """What the schema says a node is: a model's mapping, a layer list, a dict or list of something."""

    model: type[BaseModel] | None = None
    layers: bool = False
    augments: bool = False
    values: Ctx | None = None
    items: Ctx | None = None

    def merge(self, other: Ctx) -> Ctx:
        return Ctx(
            self.model or other.model,
            self.layers or other.layers,
            self.augments or other.augments,
            self.values or other.values,
            self.items or other.items,
        )


FREE = Ctx()


@cache
def _hints(cls: type[BaseModel]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except (NameError, TypeError):  # a name only type checkers see: use pydantic's resolved annotations
        return {name: f.annotation for name, f in cls.model_fields.items()}


def _ctx(annotation: Any) -> Ctx:
    from cnnspec.augments import AugmentItemBase
    from cnnspec.layers import LayerItemBase

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _ctx(args[0])
    if origin in (typing.Union, types.UnionType):
        out = FREE
        for a in args:
            out = out.merge(_ctx(a))
        return out
    if origin is list:
        item = args[0] if args else Any
        members = _leaf_classes(item)
        if any(issubclass(m, LayerItemBase) for m in members):
            return Ctx(layers=True)
        if any(issubclass(m, AugmentItemBase) for m in members):
            return Ctx(augments=True)
        return Ctx(items=_ctx(item))
    if origin is dict:
        return Ctx(values=_ctx(args[1]) if len(args) == 2 else FREE)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return Ctx(model=annotation)
    return FREE


def _leaf_classes(annotation: Any) -> list[type]:
    if isinstance(annotation, type):
        return [annotation]
    out: list[type] = []
    for a in typing.get_args(annotation):
        out += _leaf_classes(a)
    return out


def _field_ctx(cls: type[BaseModel], name: str) -> Ctx:
    from cnnspec.spec.model import BlockSpec

    if cls is BlockSpec and name == "layers":
        return Ctx(layers=True)  # typed list[Any] (checked after substitution) but written as layers
    hint = _hints(cls).get(name)
    return _ctx(hint) if hint is not None else FREE


def _always_block(cls: type[BaseModel]) -> bool:
    from cnnspec.spec.model import BlockSpec, DataSpec, ModelSpec, Spec

    return cls in (Spec, ModelSpec, DataSpec, BlockSpec)


# --- canonical order and forced block style -----------------------------------------------


def _arrange(coll: Collection, ctx: Ctx, reorder: bool) -> None:
    if coll.kind == "map" and ctx.model is not None:
        if _always_block(ctx.model):
            coll.force_block = True
        if reorder:
            order = {name: i for i, name in enumerate(ctx.model.model_fields)}
            coll.entries.sort(key=lambda e: order.get(e.key.value if e.key else "", len(order)))
        for e in coll.entries:
            if isinstance(e.value, Collection) and e.key is not None:
                _arrange(e.value, _field_ctx(ctx.model, e.key.value), reorder)
    elif coll.kind == "map" and ctx.values is not None:
        if ctx.values.model is not None and _always_block(ctx.values.model):
            coll.force_block = True
        for e in coll.entries:
            if isinstance(e.value, Collection):
                _arrange(e.value, ctx.values, reorder)
    elif coll.kind == "seq" and (ctx.layers or ctx.augments):
        coll.force_block = True
        for e in coll.entries:
            _arrange_item(e, ctx.layers, reorder)
    elif coll.kind == "seq" and ctx.items is not None:
        for e in coll.entries:
            if isinstance(e.value, Collection):
                _arrange(e.value, ctx.items, reorder)


def _arrange_item(item: Entry, layer: bool, reorder: bool) -> None:
    """A `- KIND: {PARAMS}` item: block style for the item, the kind's order for its parameters."""
    from cnnspec.augments import AUGMENTS
    from cnnspec.layers import REGISTRY

    value = item.value
    if not isinstance(value, Collection) or value.kind != "map" or len(value.entries) != 1:
        return
    value.force_block = True
    kind_entry = value.entries[0]
    assert kind_entry.key is not None
    kind = kind_entry.key.value
    params = kind_entry.value
    if _empty(params) and not kind_entry.leading and (item.eol is None or kind_entry.eol is None):
        # `- relu: {}` and `- relu:` are `- relu`.
        item.value = Scalar(kind_entry.key.text, kind, None, kind_entry.line, kind_entry.col, kind_entry.line)
        item.eol = item.eol or kind_entry.eol
        return
    cls: type[BaseModel] | None = REGISTRY.get(kind) if layer else AUGMENTS.get(kind)
    if isinstance(params, Collection) and cls is not None:
        _arrange(params, Ctx(model=cls), reorder)


def _empty(node: Node) -> bool:
    if isinstance(node, Scalar):
        return node.style is None and node.text in ("", "~", "null", "Null", "NULL")
    return node.kind == "map" and not node.entries and not node.trailing and not node.anchor


# --- emission ----------------------------------------------------------------------------


def _flowable(node: Node) -> bool:
    if isinstance(node, Scalar):
        return flow_safe(node)
    if node.force_block or node.trailing:
        return False
    return all(not e.has_comments() and _flowable(e.value) for e in node.entries)


def _flow(node: Node) -> str:
    if isinstance(node, Scalar):
        return scalar_text(node, flow=True)
    anchor = f"&{node.anchor} " if node.anchor else ""
    if node.kind == "seq":
        return anchor + "[" + ", ".join(_flow(e.value) for e in node.entries) + "]"
    parts = []
    for e in node.entries:
        assert e.key is not None
        parts.append(f"{e.key.text}: {_flow(e.value)}")
    return anchor + "{" + ", ".join(parts) + "}"


@dataclass
class Line:
    text: str
    kind: str = "code"  # code | blank | open (a key whose block follows) | verbatim (block scalar content)


def _with_eol(text: str, eol: Comment | None) -> str:
    if eol is None:
        return text
    pad = max(2, eol.col - len(text))  # keep the column the comment was aligned to, when there is room
    return f"{text}{' ' * pad}{eol.text}"


def _comments(items: list[Comment], indent: int) -> Iterator[Line]:
    for c in items:
        yield Line("", "blank") if c.text == BLANK else Line(" " * indent + c.text)


def _emit_value(head: str, entry: Entry, indent: int) -> Iterator[Line]:
    """`head` is the line so far (`  key:` or `  -`); the entry's value follows it."""
    value = entry.value
    if isinstance(value, Scalar):
        if value.block is not None:
            yield Line(_with_eol(f"{head} {value.block[0].strip()}", entry.eol))
            content = [raw for raw in value.block[1:] if raw.strip()]
            if any(ch.isdigit() for ch in value.block[0]):
                shift = indent - entry.col  # an explicit indentation indicator counts from the key
            else:
                shift = indent + INDENT - min((len(raw) - len(raw.lstrip(" ")) for raw in content), default=0)
            for raw in value.block[1:]:
                if not raw.strip():
                    yield Line("", "verbatim")
                elif shift >= 0:
                    yield Line(" " * shift + raw, "verbatim")
                else:
                    yield Line(raw[-shift:] if not raw[:-shift].strip() else raw.lstrip(), "verbatim")
            return
        text = scalar_text(value)
        yield Line(_with_eol(f"{head} {text}" if text else head, entry.eol))
        return
    if _flowable(value):
        flow = _flow(value)
        if len(head) + 1 + len(flow) <= WIDTH:
            yield Line(_with_eol(f"{head} {flow}", entry.eol))
            return
    anchor = f" &{value.anchor}" if value.anchor else ""
    if not value.entries and not value.trailing:
        # An empty collection kept in block style would be written as nothing (null): `[]` or `{}`.
        yield Line(_with_eol(f"{head}{anchor} {'[]' if value.kind == 'seq' else '{}'}", entry.eol))
        return
    if (
        entry.key is None
        and value.kind == "map"
        and value.entries
        and not value.entries[0].leading
        and entry.eol is None
        and not anchor
    ):
        # `- key: ...` written compactly on the dash's line.
        yield from _emit_map(value, indent + INDENT, first=head + " ")
        return
    yield Line(_with_eol(head + anchor, entry.eol), "open")
    if value.kind == "map":
        yield from _emit_map(value, indent + INDENT)
    else:
        yield from _emit_seq(value, indent + INDENT)


def _emit_map(coll: Collection, indent: int, first: str | None = None) -> Iterator[Line]:
    if not coll.entries:
        yield Line(first.rstrip() + " {}" if first else " " * indent + "{}")
        return
    for i, e in enumerate(coll.entries):
        yield from _comments(e.leading, indent)
        assert e.key is not None
        start = first if (i == 0 and first is not None) else " " * indent
        yield from _emit_value(f"{start}{e.key.text}:", e, indent)
    yield from _comments(coll.trailing, indent)


def _emit_seq(coll: Collection, indent: int) -> Iterator[Line]:
    for e in coll.entries:
        yield from _comments(e.leading, indent)
        yield from _emit_value(" " * indent + "-", e, indent)
    yield from _comments(coll.trailing, indent)


def _tidy(lines: list[Line]) -> list[str]:
    """One blank line at most in a row, none right after a key that opens a block, none at the end."""
    out: list[str] = []
    prev = "open"
    for line in lines:
        if line.kind == "blank" and prev in ("blank", "open"):
            continue
        out.append(line.text)
        prev = line.kind
    while out and not out[-1].strip():
        out.pop()
    return out


def render(doc: Document) -> str:
    lines: list[Line] = []
    header_before = [c for c in doc.header if doc.explicit_start and c.line < doc.start_line]
    header_after = [c for c in doc.header if c not in header_before]
    lines += _comments(header_before, 0)
    if doc.explicit_start:
        lines.append(Line("---"))
    lines += _comments(header_after, 0)
    lines += _emit_map(doc.root, 0)
    lines += _comments(doc.footer, 0)
    text = "\n".join(_tidy(lines))
    return text.lstrip("\n") + "\n"


# --- the public API ----------------------------------------------------------------------


def format_text(text: str, file: str = "<string>") -> str:
    """The canonical layout of a spec's text. The text must be a spec that loads (see `load`)."""
    from cnnspec.spec.model import Spec

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    doc = parse(text)
    # A key moved in front of the anchor its alias refers to would break the file: keep the
    # order of documents that use aliases.
    _arrange(doc.root, Ctx(model=Spec), reorder=not doc.has_aliases)
    out = render(doc)
    _verify(text, out, doc, file)
    return out


def _verify(before: str, after: str, doc: Document, file: str) -> None:
    """Formatting must not change what the file means or drop a comment; if it did, that is a bug."""
    from cnnspec.spec.source import parse_yaml

    old, _ = parse_yaml(before, file)
    new, _ = parse_yaml(after, file)
    if _normal(old) != _normal(new):
        raise RuntimeError(f"cnnspec fmt would change the data of {file}; this is a bug, please report it")
    if sorted(doc.comments) != sorted(parse(after).comments):
        raise RuntimeError(f"cnnspec fmt would lose a comment of {file}; this is a bug, please report it")


def _normal(value: Any) -> Any:
    """Data with `- KIND`, `- KIND:` and `- KIND: {}` list items made alike."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        out = []
        for v in value:
            if isinstance(v, dict) and len(v) == 1 and next(iter(v.values())) in (None, {}):
                v = next(iter(v))
            out.append(_normal(v))
        return out
    return value


def format_file(path: str | Path) -> tuple[str, str]:
    """(the file's text, its canonical layout); raises SpecError when the file does not load as a spec."""
    from cnnspec.spec.load import loads
    from cnnspec.spec.source import read_spec_text

    text = read_spec_text(path)
    loads(text, str(path))  # refuse what is not a valid spec, with located errors
    return text, format_text(text, str(path))


def unified_diff(path: str, before: str, after: str) -> str:
    """A `diff -u` of a reformatting, for `fmt --diff`."""
    import difflib

    lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"{path}", f"{path} (formatted)")
    return "".join(lines)
