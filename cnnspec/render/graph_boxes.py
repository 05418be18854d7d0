"""What each box of a drawn graph says and how big it is: shared by the SVG, HTML and PNG renderers.

Text is set in a monospace font, so a box's width follows from its longest line without a font
file: CHAR_WIDTH per character at FONT_SIZE.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnspec.layers import REGISTRY
from cnnspec.layers.base import fmt_shape
from cnnspec.render.layout import Layout, layered
from cnnspec.render.summary import human
from cnnspec.review.graphview import Box, Mark, View

FONT_SIZE = 11.0
CHAR_WIDTH = 6.7  # a monospace glyph at FONT_SIZE, with some room
LINE_HEIGHT = 14.0
PAD_X = 8.0
PAD_Y = 6.0
MIN_WIDTH = 96.0
MAX_CHARS = 44  # a longer line is cut with "…" (the tooltip has it whole)

# A box's fill follows what its kind does: the module of cnnspec.layers that defines it.
_CATEGORY_OF_MODULE = {
    "conv": "conv",
    "dense": "dense",
    "pool": "pool",
    "elementwise": "act",
    "reshape": "reshape",
    "backbone": "backbone",
}


def category(box: Box) -> str:
    """`conv`, `norm`, `dense`, `pool`, `act`, `merge`, `reshape`, `backbone`, `other`, or the box's role."""
    if not box.is_layer:
        return box.kind
    cls = REGISTRY.get(box.kind)
    if cls is None:
        return "other"
    if "norm" in box.kind:
        return "norm"
    if cls.many_inputs:
        return "merge"
    return _CATEGORY_OF_MODULE.get(cls.__module__.rsplit(".", 1)[-1], "other")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def lines(box: Box, mark: Mark | None = None) -> list[str]:
    """The box's text, line by line: the title (id and kind), the key parameters, the output shape,
    and any notes of its mark (what a diff changed)."""
    if box.kind == "input":
        out = ["input", fmt_shape(box.shape)]
    elif box.kind == "external":
        out = [box.id, fmt_shape(box.shape)]
    elif box.is_group:
        out = [f"{box.id} ▸", f"{box.label} · {human(box.params)} params", fmt_shape(box.shape)]
    else:
        out = [f"{box.id} · {box.kind}"]
        if box.label:
            out.append(box.label)
        out.append(fmt_shape(box.shape))
    if mark is not None:
        out += list(mark.notes)
    return [_cut(line) for line in out]


def size(text: list[str]) -> tuple[float, float]:
    width = max(MIN_WIDTH, max(len(line) for line in text) * CHAR_WIDTH + 2 * PAD_X)
    return width, len(text) * LINE_HEIGHT + 2 * PAD_Y


def tooltip(box: Box) -> str:
    """Everything about the box, for its hover text: kind, every written field, shape, params, MACs, RF."""
    if box.kind == "input":
        return f"model input: {fmt_shape(box.shape)}"
    if box.kind == "external":
        return f"{box.id} (outside this group): {fmt_shape(box.shape)}"
    rf = box.receptive_field
    head = [f"{box.id} ({box.kind})" if box.is_layer else f"{box.id}: {len(box.members)} layers"]
    head += [f"{k}: {v}" for k, v in box.settings.items()]
    head += [
        f"output: {fmt_shape(box.shape)}",
        f"params: {box.params:,}",
        f"MACs: {box.macs:,} ({human(box.macs)})",
        f"receptive field: {rf[0] if rf[0] == rf[1] else f'{rf[0]}×{rf[1]}'}",
    ]
    return "\n".join(head)


@dataclass
class Drawing:
    """A view laid out: each box's lines, the layout, the edges in the layout's order."""

    view: View
    text: dict[str, list[str]]
    layout: Layout
    marks: dict[str, Mark]


def draw(view: View, marks: dict[str, Mark] | None = None) -> Drawing:
    marks = marks or {}
    text = {b.id: lines(b, marks.get(b.id)) for b in view.boxes}
    sizes = {b.id: size(text[b.id]) for b in view.boxes}
    layout = layered(sizes, [(e.source, e.target) for e in view.edges])
    return Drawing(view, text, layout, marks)
