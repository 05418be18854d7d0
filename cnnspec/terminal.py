"""Untrusted strings in text output: class names and spec names from an ONNX file or run.json,
file and folder names from a data set someone sent.

`printable` escapes everything a terminal would act on instead of showing: C0 and C1
control characters (ESC starts the sequences that retitle a window, clear the screen or
recolour text; CR and newlines forge lines), DEL, Unicode line and paragraph separators,
and the bidirectional controls that reorder what is shown (the "Trojan Source" characters).
They are written the way Python writes them in a string literal (`\\x1b`, `\\n`, `\\u202e`),
so the text stays readable and can be told apart from a real line break. `cell` does the same
for a rich table cell or title and also keeps rich from reading `[bold]` or `[link=…]` in it
as markup. JSON output needs neither: json.dumps escapes control characters itself, and the
values stay exact there.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

# C0 controls (tab and newline included), DEL and C1 controls, line/paragraph separators,
# bidi embeddings, overrides and isolates, and the zero-width marks that steer them.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if match.group() == "\n":
        return "\\n"
    if match.group() == "\r":
        return "\\r"
    if match.group() == "\t":
        return "\\t"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` as a str with every character a terminal would act on written as an escape."""
    s = str(text)
    return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s


def cell(text: object) -> Text:
    """`printable(text)` as a rich Text: shown literally, never parsed as markup."""
    from rich.text import Text

    return Text(printable(text))
