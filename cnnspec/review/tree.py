"""A YAML document as a tree of entries that carry their own comments, for `cnnspec fmt`.

ruamel's round-trip mode hangs a comment on whichever token happens to precede it, so
reordering keys or switching block/flow style moves comments to odd places. Here the
text is read as events (which know every scalar's exact source span), placed by the same
walker that loads a spec (`cnnspec.spec.events`), and each comment is attached by its line
to the entry it belongs to:

- an end-of-line comment belongs to the deepest entry that starts on its line outside a
  flow collection (`- conv2d: {...}  # c` → the `conv2d` entry);
- full-line comments and blank lines belong to the next entry, except comments indented
  deeper than that entry, which stay at the end of the block they were written in
  (a commented-out last layer stays in the layer list);
- whatever comes before the first key is the document header and stays at the top.

Scalars keep their source text (quotes, `5.0e-4`, `"0"`), so the formatter never
changes a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from cnnspec.spec import events

BLANK = ""
"""A blank line in a comment group."""


@dataclass
class Comment:
    """A full-line comment (its text from `#`) or a blank line (`text == BLANK`)."""

    text: str
    line: int
    col: int


@dataclass
class Scalar:
    """A scalar, an alias (`text` = '*name'), or a block scalar (`block` = its source lines)."""

    text: str
    value: str
    style: str | None
    line: int
    col: int
    end_line: int
    anchor: str | None = None
    block: list[str] | None = None  # `|`/`>` scalars: the header line, then the content lines as written

    @property
    def multiline(self) -> bool:
        return self.end_line > self.line and self.block is None


@dataclass
class Entry:
    """A mapping key with its value, or a sequence item."""

    key: Scalar | None
    value: Node
    line: int
    col: int  # column of the key, or of the item's dash
    parent: Collection
    leading: list[Comment] = field(default_factory=list)
    eol: Comment | None = None

    def has_comments(self) -> bool:
        return bool(self.leading) or self.eol is not None


@dataclass
class Collection:
    """A mapping or a sequence, block or flow in the source."""

    kind: Literal["map", "seq"]
    flow: bool
    line: int
    col: int
    anchor: str | None = None
    entries: list[Entry] = field(default_factory=list)
    trailing: list[Comment] = field(default_factory=list)
    parent: Entry | None = None
    # Set by the formatter: containers that are always written in block style.
    force_block: bool = False

    def get(self, key: str) -> Entry | None:
        for e in self.entries:
            if e.key is not None and e.key.value == key:
                return e
        return None


Node = Scalar | Collection


@dataclass
class Document:
    root: Collection
    header: list[Comment]  # comments and blank lines before the first key, kept at the top
    footer: list[Comment]  # comments after the last entry at the top level
    explicit_start: bool = False
    start_line: int = 0  # line of an explicit `---`
    has_aliases: bool = False
    comments: list[str] = field(default_factory=list)  # every comment's text, in source order


def scan_comments(text: str, covered: list[tuple[int, int]]) -> tuple[list[Comment], list[Comment], set[int]]:
    """Full-line comments, end-of-line comments and blank-line numbers, skipping scalar spans."""
    covered = sorted(covered)
    full: list[Comment] = []
    eol: list[Comment] = []
    blanks: set[int] = set()
    span = 0
    offset = 0
    for line_no, line in enumerate(text.split("\n")):
        start = offset
        offset += len(line) + 1
        while span < len(covered) and covered[span][1] <= start:
            span += 1

        def inside(i: int, _span: int = span) -> bool:
            j = _span
            while j < len(covered) and covered[j][0] <= i:
                if i < covered[j][1]:
                    return True
                j += 1
            return False

        if not line.strip():
            if not inside(start):
                blanks.add(line_no)
            continue
        for col, ch in enumerate(line):
            if ch != "#" or (col > 0 and line[col - 1] not in " \t"):
                continue
            if inside(start + col):
                continue
            comment = Comment(line[col:].rstrip(), line_no, col)
            (full if not line[:col].strip() else eol).append(comment)
            break
    return full, eol, blanks


class _Builder:
    """Turns the parser's events, placed by the one walker (cnnspec.spec.events), into the entry tree."""

    def __init__(self, text: str):
        self.text = text
        self.entries: list[Entry] = []  # in source order
        self.covered: list[tuple[int, int]] = []
        self.has_aliases = False
        self.explicit_start = False
        self.start_line = 0

    def _scalar(self, event: Any) -> Scalar:
        """A scalar event (a key or a value) as written; its span is no place for a comment."""
        sm, em = event.start_mark, event.end_mark
        self.covered.append((sm.index, em.index))
        source = self.text[sm.index : em.index]
        block = None
        if event.style in ("|", ">"):
            block = source.rstrip("\n").split("\n")
            if block and "+" not in block[0]:
                while len(block) > 1 and not block[-1].strip():
                    block.pop()
        # An anchor is part of the scalar's source text (`&a 3`), so it is kept as written.
        return Scalar(source, event.value, event.style, sm.line, sm.column, em.line, event.anchor, block)

    def build(self) -> Collection:
        root: Collection | None = None
        keys: dict[int, Scalar] = {}  # a key event's id → its Scalar, made once when it is read
        for step in events.walk(events.pure_events(self.text)):
            event, name = step.event, step.name
            sm = event.start_mark
            if step.kind == "document":
                self.explicit_start = bool(event.explicit)
                self.start_line = sm.line
                continue
            if step.kind == "end":
                continue
            if step.kind == "key":
                if name != "ScalarEvent":
                    raise ValueError("mapping keys must be plain names")
                keys[id(event)] = self._scalar(event)
                continue
            node: Node
            if step.opened is not None:
                kind: Literal["map", "seq"] = "map" if step.opened.mapping else "seq"
                node = Collection(kind, bool(event.flow_style), sm.line, sm.column, anchor=event.anchor)
                step.opened.value = node
            elif name == "AliasEvent":
                self.has_aliases = True
                self.covered.append((sm.index, event.end_mark.index))
                node = Scalar(f"*{event.anchor}", "", None, sm.line, sm.column, event.end_mark.line)
            else:
                node = self._scalar(event)
            if step.parent is None:
                if not isinstance(node, Collection):
                    raise ValueError("the document is not a mapping")
                root = node
                continue
            parent: Collection = step.parent.value
            if parent.kind == "seq":
                entry = Entry(None, node, sm.line, parent.col if not parent.flow else sm.column, parent)
            else:
                key = keys.pop(id(step.key))
                entry = Entry(key, node, key.line, key.col, parent)
            parent.entries.append(entry)
            self.entries.append(entry)
            if isinstance(node, Collection):
                node.parent = entry
        if root is None:
            raise ValueError("the document is empty")
        return root


def parse(text: str) -> Document:
    """Parse spec text into a Document; the text must already have loaded as a valid spec."""
    builder = _Builder(text)
    root = builder.build()
    full, eol, blanks = scan_comments(text, builder.covered)
    doc = Document(root, [], [], builder.explicit_start, builder.start_line, builder.has_aliases)
    doc.comments = [c.text for c in sorted(full + eol, key=lambda c: (c.line, c.col))]
    entries = builder.entries
    first_line = root.entries[0].line if root.entries else root.line

    # End-of-line comments: the deepest entry starting on that line in a block collection.
    by_line: dict[int, list[Entry]] = {}
    for e in entries:
        by_line.setdefault(e.line, []).append(e)
    for c in eol:
        on_line = [e for e in by_line.get(c.line, []) if not e.parent.flow]
        if on_line:
            target = on_line[-1]
        else:
            before = [e for e in entries if e.line <= c.line]
            if not before:
                doc.header.append(c)
                continue
            target = before[-1]
        if target.eol is None:
            target.eol = c
        else:  # one line holds one comment: the second becomes a full-line comment
            full.append(c)

    # Full-line comments and blank lines. A blank line goes wherever the comment after it goes
    # (so a blank line before a trailing comment stays before it), else to the next entry.
    groups = sorted(full + [Comment(BLANK, n, 0) for n in blanks], key=lambda c: c.line)
    starts = sorted(by_line)
    blanks_waiting: list[Comment] = []
    waiting_for: Entry | None = None

    def next_entry(line: int) -> Entry | None:
        nxt = next((s for s in starts if s > line), None)
        return by_line[nxt][0] if nxt is not None else None

    def put(items: list[Comment], entry: Entry | None) -> None:
        if entry is not None:
            entry.leading.extend(items)
        else:
            doc.footer.extend(items)

    for c in groups:
        if c.line < first_line:
            doc.header.append(c)
            continue
        upcoming = next_entry(c.line)
        if blanks_waiting and upcoming is not waiting_for:
            put(blanks_waiting, waiting_for)
            blanks_waiting = []
        if c.text == BLANK:
            blanks_waiting.append(c)
            waiting_for = upcoming
            continue
        prev = [e for e in entries if e.line < c.line]
        holder = _trailing_holder(c, prev[-1] if prev else None, upcoming, root)
        if holder is not None:
            holder.trailing.extend([*blanks_waiting, c])
        else:
            put([*blanks_waiting, c], upcoming)
        blanks_waiting = []
    put(blanks_waiting, waiting_for)
    return doc


def _ancestors(entry: Entry | None) -> list[Collection]:
    out: list[Collection] = []
    coll = entry.parent if entry is not None else None
    while coll is not None:
        out.append(coll)
        coll = coll.parent.parent if coll.parent is not None else None
    return out


def _trailing_holder(c: Comment, prev: Entry | None, nxt: Entry | None, root: Collection) -> Collection | None:
    """The block a comment stays at the end of, when it is indented deeper than what follows it."""
    if prev is None or c.text == BLANK:
        return None
    limit = nxt.col if nxt is not None else 0
    if c.col <= limit:
        return None
    keep = set(map(id, _ancestors(nxt))) if nxt is not None else set()
    best = None
    for coll in _ancestors(prev):
        if id(coll) in keep or coll.flow or coll is root:
            continue
        col = coll.entries[0].col if coll.entries else coll.col
        if col <= c.col:
            best = coll
            break
    return best


_PLAIN_FLOW_UNSAFE = re.compile(r"[,\[\]{}]")


def flow_safe(s: Scalar) -> bool:
    """Whether the scalar can be written inside a flow collection as it is."""
    if s.block is not None or s.multiline:
        return False
    if s.style is None and not s.text.startswith("*"):
        return not _PLAIN_FLOW_UNSAFE.search(s.text)
    return True


def scalar_text(s: Scalar, *, flow: bool = False) -> str:
    """A one-line source text for the scalar (a multi-line one is re-quoted)."""
    if flow and s.style is None and not s.text:
        return "null"  # `key:` is null; inside braces it must be spelt out
    if s.multiline:
        import json

        return json.dumps(s.value, ensure_ascii=False)
    return s.text
