"""Safe YAML reading that keeps the position of every node.

The text is read as a stream of events (never composed recursively, never
constructed into Python objects by tag), so hostile input cannot run code,
blow the stack or expand an alias bomb. Each value's path is mapped to its
line and column so later stages can point at the YAML that caused an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml import events as ev
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from cnnspec.errors import Diagnostic, Location, SpecError

PathKey = tuple[Hashable, ...]

MAX_DEPTH = 64
MAX_FILE_BYTES = 10 * 1024 * 1024
# Nodes that aliases may add on top of the text's own nodes; an alias bomb
# multiplies the node count exponentially and trips this long before memory.
MAX_ALIAS_NODES = 10_000

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_HEX = re.compile(r"^0x[0-9a-fA-F_]+$")
_OCT = re.compile(r"^0o[0-7_]+$")


@dataclass
class SourceMap:
    """Where each node of a loaded document came from."""

    file: str
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Sequence[Hashable], *, key: bool = False) -> Location:
        """Position of the node at `path` (its key when `key`), else its nearest ancestor."""
        p = tuple(path)
        if key and p in self.keys:
            return Location(self.file, *self.keys[p])
        while p:
            if p in self.values:
                return Location(self.file, *self.values[p])
            p = p[:-1]
        return Location(self.file, *self.values.get((), (1, 1)))

    def sub(self, prefix: Sequence[Hashable], new_prefix: Sequence[Hashable] = ()) -> SourceMap:
        """The part of the map under `prefix`, re-rooted at `new_prefix`."""
        pre, n = tuple(prefix), len(prefix)
        out = SourceMap(self.file)
        for src, dst in ((self.values, out.values), (self.keys, out.keys)):
            for k, v in src.items():
                if k[:n] == pre:
                    dst[tuple(new_prefix) + k[n:]] = v
        return out


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def _scalar(event: ev.ScalarEvent, file: str) -> Any:
    value: str = event.value
    if event.style is not None:  # quoted or block scalar: always a string
        return value
    low = value.lower()
    if value in ("", "~") or low == "null":
        return None
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(value):
        return int(value.replace("_", ""))
    if _HEX.match(value):
        return int(value[2:].replace("_", ""), 16)
    if _OCT.match(value):
        return int(value[2:].replace("_", ""), 8)
    if low.lstrip("+-") in (".nan", ".inf", "nan", "inf", "infinity"):
        raise SpecError(
            Diagnostic(
                f"'{value}' is not a finite number",
                Location(file, *_pos(event.start_mark)),
                hint="write a finite number",
            )
        )
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        return value
    if not math.isfinite(number):
        raise SpecError(Diagnostic(f"'{value}' is not a finite number", Location(file, *_pos(event.start_mark))))
    # YAML 1.2 floats need a digit; '1e3' without a dot is a float too.
    return number


def _node_count(value: Any) -> int:
    stack, n = [value], 0
    while stack:
        v = stack.pop()
        n += 1
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return n


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse YAML text into plain Python data and a SourceMap, refusing hostile input."""
    source = SourceMap(file)
    loc = lambda mark: Location(file, *_pos(mark))  # noqa: E731
    if "\x00" in text:
        raise SpecError(Diagnostic("the file is binary, not YAML text", Location(file, 1, 1)))

    yaml = YAML(typ="safe", pure=True)
    # Containers under construction: (container, path, pending key, pending key mark, seen key lines)
    stack: list[list[Any]] = []
    anchors: dict[str, tuple[Any, int, PathKey]] = {}
    alias_nodes = 0
    root: Any = None
    documents = 0

    def attach(value: Any, path: PathKey, mark: Any) -> None:
        nonlocal root
        source.values[path] = _pos(mark)
        if not stack:
            root = value
            return
        top = stack[-1]
        container = top[0]
        if isinstance(container, list):
            container.append(value)
        else:
            container[top[2]] = value
            top[2] = None

    def child_path(scalar_key_event: ev.Event | None = None) -> PathKey | None:
        """The path the next value gets; None when the next scalar is a mapping key."""
        if not stack:
            return ()
        top = stack[-1]
        container, path = top[0], top[1]
        if isinstance(container, list):
            return path + (len(container),)
        if top[2] is None:
            return None
        return path + (top[2],)

    try:
        for event in yaml.parse(text):
            if isinstance(event, ev.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise SpecError(Diagnostic("a spec file holds one YAML document, found a second", loc(event.start_mark)))
                continue
            if isinstance(event, (ev.StreamStartEvent, ev.StreamEndEvent, ev.DocumentEndEvent)):
                continue
            tag = getattr(event, "tag", None)
            if tag is not None and not (isinstance(event, ev.ScalarEvent) and event.implicit[0] and tag == "!"):
                raise SpecError(
                    Diagnostic(
                        f"YAML tag '{tag}' is not allowed",
                        loc(event.start_mark),
                        hint="specs are plain data: remove the tag",
                    )
                )
            if isinstance(event, (ev.MappingEndEvent, ev.SequenceEndEvent)):
                container, path, _, _, _, anchor = stack.pop()
                if anchor:
                    anchors[anchor] = (container, _node_count(container), path)
                continue
            path = child_path()
            if path is None:  # a mapping key
                top = stack[-1]
                if not isinstance(event, ev.ScalarEvent):
                    raise SpecError(Diagnostic("mapping keys must be plain names", loc(event.start_mark)))
                key = event.value
                if key in top[0] or key in top[4]:
                    first = top[4].get(key)
                    raise SpecError(
                        Diagnostic(
                            f"duplicate key '{key}' at line {event.start_mark.line + 1} (first at line {first})",
                            loc(event.start_mark),
                            hint="a key may appear once in a mapping: remove one",
                        )
                    )
                top[2] = key
                top[4][key] = event.start_mark.line + 1
                source.keys[top[1] + (key,)] = _pos(event.start_mark)
                continue
            if isinstance(event, ev.AliasEvent):
                if event.anchor not in anchors:
                    raise SpecError(Diagnostic(f"unknown alias '*{event.anchor}'", loc(event.start_mark)))
                value, size, _ = anchors[event.anchor]
                alias_nodes += size
                if alias_nodes > MAX_ALIAS_NODES:
                    raise SpecError(
                        Diagnostic(
                            f"aliases expand to more than {MAX_ALIAS_NODES} nodes",
                            loc(event.start_mark),
                            hint="an alias bomb, or a spec that should use `repeat` or `blocks` instead",
                        )
                    )
                attach(value, path, event.start_mark)
                continue
            if isinstance(event, ev.ScalarEvent):
                value = _scalar(event, file)
                attach(value, path, event.start_mark)
                if event.anchor:
                    anchors[event.anchor] = (value, 1, path)
                continue
            if isinstance(event, (ev.MappingStartEvent, ev.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise SpecError(
                        Diagnostic(f"nesting deeper than {MAX_DEPTH} levels", loc(event.start_mark), hint="flatten the spec")
                    )
                container: Any = {} if isinstance(event, ev.MappingStartEvent) else []
                attach(container, path, event.start_mark)
                stack.append([container, path, None, None, {}, event.anchor])
                continue
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        where = Location(file, *_pos(mark)) if mark else Location(file)
        raise SpecError(Diagnostic(f"YAML syntax error: {problem}", where)) from None
    except YAMLError as exc:
        raise SpecError(Diagnostic(f"YAML error: {exc}", Location(file))) from None
    except RecursionError:
        raise SpecError(Diagnostic(f"nesting deeper than {MAX_DEPTH} levels", Location(file))) from None
    if () not in source.values:
        source.values[()] = (1, 1)
    return root, source


def read_spec_text(path: str | Path) -> str:
    """Read a spec file, refusing what cannot be a spec before parsing it."""
    p = Path(path)
    file = str(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise SpecError(Diagnostic(f"no such file: {file}")) from None
    except OSError as exc:
        raise SpecError(Diagnostic(f"cannot read {file}: {exc.strerror}")) from None
    if p.is_dir():
        raise SpecError(Diagnostic(f"{file} is a folder, not a spec file"))
    if size > MAX_FILE_BYTES:
        raise SpecError(
            Diagnostic(f"the file is {size / 2**20:.1f} MiB; a spec may be at most {MAX_FILE_BYTES // 2**20} MiB", Location(file))
        )
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            Diagnostic("the file is not UTF-8 text", Location(file, 1, 1), notes=(f"byte {exc.start} cannot be decoded",))
        ) from None
