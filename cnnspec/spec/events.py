"""The one walk over a YAML event stream: where each event goes in the document.

Loading (`spec/source.py`: plain data, positions and the guards against hostile input) and
formatting (`review/tree.py`: entries that keep their comments) both read a spec as a stream of
events, never by composing a node graph; this is the bookkeeping they share: which events open
and close a collection, which scalar is a mapping key and which one its value, the path of every
node (`("model", "layers", 0, "conv2d")`), and keys a mapping already holds. What each reader
builds, and what it refuses, is its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

PathKey = tuple[Hashable, ...]

_SKIP = frozenset({"StreamStartEvent", "StreamEndEvent", "DocumentEndEvent"})
_START = frozenset({"MappingStartEvent", "SequenceStartEvent"})
_END = frozenset({"MappingEndEvent", "SequenceEndEvent"})


@dataclass(eq=False)
class Frame:
    """An open mapping or sequence."""

    path: PathKey
    mapping: bool
    event: Any  # its start event (anchor, flow style, position)
    value: Any = None  # what the reader builds for it
    key: Any = None  # a mapping's key event waiting for its value; None when the next node is a key
    items: int = 0  # a sequence's nodes so far: the next one's index
    seen: dict[Any, int] = field(default_factory=dict)  # a mapping's keys → the 1-based line of each


@dataclass(frozen=True)
class Step:
    """One event, placed in the document.

    kind: "document" (a document starts), "key" (a mapping key; `path` is the path of the value it
    names), "node" (a scalar, an alias, or the start of a collection, at `path`) or "end" (a
    collection closes; `opened` is its frame).
    """

    kind: Literal["document", "key", "node", "end"]
    event: Any
    path: PathKey
    parent: Frame | None = None  # the collection the key or node is in; None for the root
    key: Any = None  # a node in a mapping: its key's event
    opened: Frame | None = None  # a collection's start: its new frame (set its `value`); an end: the frame closed
    first_line: int | None = None  # a key the mapping holds already: the line of the first one
    depth: int = 0  # collections open around it (a node's own, when it starts one, not counted)

    @property
    def name(self) -> str:
        """The event's class name: ScalarEvent, AliasEvent, MappingStartEvent, …"""
        return type(self.event).__name__


def walk(events: Iterable[Any]) -> Iterator[Step]:
    """Place each event of a YAML stream (ruamel's or libyaml's events alike).

    A key that is not a scalar (a collection or an alias) is yielded for the reader to refuse;
    the walk cannot go on past it, so it raises ValueError if asked to.
    """
    stack: list[Frame] = []
    for event in events:
        name = type(event).__name__
        if name in _SKIP:
            continue
        if name == "DocumentStartEvent":
            yield Step("document", event, ())
            continue
        if name in _END:
            frame = stack.pop()
            yield Step("end", event, frame.path, stack[-1] if stack else None, opened=frame, depth=len(stack))
            continue
        top = stack[-1] if stack else None
        if top is not None and top.mapping and top.key is None:
            if name != "ScalarEvent":
                yield Step("key", event, top.path, top, depth=len(stack))
                raise ValueError("mapping keys must be plain names")
            first = top.seen.get(event.value)
            top.seen.setdefault(event.value, event.start_mark.line + 1)
            top.key = event
            yield Step("key", event, (*top.path, event.value), top, first_line=first, depth=len(stack))
            continue
        key = None
        if top is None:
            path: PathKey = ()
        elif top.mapping:
            key, top.key = top.key, None
            path = (*top.path, key.value)
        else:
            path = (*top.path, top.items)
            top.items += 1
        opened = Frame(path, name == "MappingStartEvent", event) if name in _START else None
        around = len(stack)
        if opened is not None:
            stack.append(opened)
        yield Step("node", event, path, top, key, opened, depth=around)


def pure_events(text: str) -> Iterator[Any]:
    """Events from ruamel.yaml's pure-Python parser: the reference, and the source of error messages."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).parse(text)  # type: ignore[no-any-return]
