"""User text in Markdown that GitHub renders (a pull-request comment, a job summary): shown as written,
never read as markup.

A spec's strings (its name, a value, a path, a REV:PATH label) go into the diff's Markdown. Raw, a
backtick ends a code span early, `</details><img src=…>` is HTML that GitHub renders, `|` splits a
table cell, `@name` mentions a user and `$…$` is maths. `text` is for running text: every character of
`_PUNCTUATION` gets a backslash (CommonMark lets any ASCII punctuation be escaped that way) and `&`,
`<`, `>` become entities, so no tag, link, emphasis, mention or cell break survives. `code` is for a
code span: its fence is one backtick longer than the longest run of backticks inside (CommonMark's rule),
padded with a space where the text starts or ends with a backtick or a space; inside a code span nothing
is markup, HTML included. Both first write control characters as escapes (cnnspec.terminal.printable),
so a newline cannot end a list item or a table row. `code(..., cell=True)` also writes `|` as `\\|`,
which a GFM table reads as `|` inside a code span.
"""

from __future__ import annotations

import re

from cnnspec.terminal import printable

_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+!|~@$:^=-])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def text(value: object) -> str:
    """`value` as Markdown running text that shows exactly its characters."""
    escaped = _PUNCTUATION.sub(r"\\\1", printable(value))
    return "".join(_ENTITIES.get(ch, ch) for ch in escaped)


def code(value: object, *, cell: bool = False) -> str:
    """`value` as a Markdown code span (in a GFM table cell when `cell`)."""
    s = printable(value)
    longest = max((len(run) for run in re.findall("`+", s)), default=0)
    fence = "`" * (longest + 1)
    if s.startswith(("`", " ")) or s.endswith(("`", " ")):
        s = f" {s} "
    if cell:
        s = s.replace("|", "\\|")
    return f"{fence}{s}{fence}"
