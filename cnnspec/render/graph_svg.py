"""A laid-out view (cnnspec.render.graph_boxes) as SVG: `cnnspec graph -o FILE.svg`, and the drawings
inside the HTML pages.

Every box is a `<g class="node ROLE CATEGORY [STATUS]">` carrying its id, kind, params and MACs as
`data-` attributes and its full description as a `<title>` (the hover text of browsers and SVG
viewers); ROLE is `layer`, `group`, `input` or `external`, STATUS a diff's mark. Every edge is a
`<path class="edge STYLE">` with `data-source` and `data-target` (STYLE: seq, residual, concat,
shape; cnnspec.review.graphview), so tests and scripts can read the drawing's structure back.
"""

from __future__ import annotations

import re
from html import escape as html_escape

from cnnspec.render.graph_boxes import FONT_SIZE, LINE_HEIGHT, PAD_Y, Drawing, category, tooltip
from cnnspec.review.graphview import STYLES

# Characters XML 1.0 forbids even escaped (controls, lone surrogates, U+FFFE/U+FFFF): a spec's string
# value may hold them, and one would make the whole SVG unreadable. Each is drawn as U+FFFD.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def escape(text: str) -> str:
    """`text` for SVG text and attribute values: markup escaped, characters XML forbids replaced."""
    return html_escape(_NOT_XML.sub("\ufffd", text))


EDGE_COLOURS = {"seq": "#64748b", "residual": "#7c3aed", "concat": "#0284c7", "shape": "#94a3b8"}

# The drawing's look; the HTML pages include it once for all their drawings.
STYLE = """
svg.cnnspec-graph { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
svg.cnnspec-graph text { font-size: 11px; fill: #0f172a; }
svg.cnnspec-graph text.title { font-weight: 600; }
svg.cnnspec-graph .node rect { stroke: #475569; stroke-width: 1; fill: #ffffff; }
svg.cnnspec-graph .node.conv rect { fill: #dbeafe; }
svg.cnnspec-graph .node.norm rect { fill: #dcfce7; }
svg.cnnspec-graph .node.act rect { fill: #f1f5f9; }
svg.cnnspec-graph .node.pool rect { fill: #ffedd5; }
svg.cnnspec-graph .node.dense rect { fill: #fce7f3; }
svg.cnnspec-graph .node.merge rect { fill: #ede9fe; }
svg.cnnspec-graph .node.reshape rect { fill: #f8fafc; }
svg.cnnspec-graph .node.backbone rect { fill: #e0e7ff; }
svg.cnnspec-graph .node.input rect { fill: #fef9c3; }
svg.cnnspec-graph .node.external rect { fill: #f8fafc; stroke-dasharray: 4 3; }
svg.cnnspec-graph .node.external text { fill: #64748b; }
svg.cnnspec-graph .node.group rect { fill: #e0f2fe; stroke-width: 2; stroke: #0369a1; }
svg.cnnspec-graph .node.added rect { fill: #bbf7d0; stroke: #15803d; stroke-width: 2.5; }
svg.cnnspec-graph .node.removed rect { fill: #fecaca; stroke: #b91c1c; stroke-width: 2.5; }
svg.cnnspec-graph .node.changed rect { fill: #fef08a; stroke: #a16207; stroke-width: 2.5; }
svg.cnnspec-graph .node.effect rect { stroke: #ea580c; stroke-width: 2.5; stroke-dasharray: 6 3; }
svg.cnnspec-graph .edge { fill: none; stroke-width: 1.3; }
svg.cnnspec-graph .edge.seq { stroke: #64748b; }
svg.cnnspec-graph .edge.residual { stroke: #7c3aed; stroke-width: 1.8; }
svg.cnnspec-graph .edge.concat { stroke: #0284c7; stroke-width: 1.8; }
svg.cnnspec-graph .edge.shape { stroke: #94a3b8; stroke-dasharray: 3 3; }
"""


def _path(points: list[tuple[float, float]]) -> str:
    """Curves between ranks, straight lines down the height of a rank an edge passes."""
    (x0, y0), rest = points[0], points[1:]
    out = [f"M{x0:.1f},{y0:.1f}"]
    px, py = x0, y0
    for i, (x, y) in enumerate(rest):
        if i % 2 == 0:
            mid = (py + y) / 2
            out.append(f"C{px:.1f},{mid:.1f} {x:.1f},{mid:.1f} {x:.1f},{y:.1f}")
        else:
            out.append(f"L{x:.1f},{y:.1f}")
        px, py = x, y
    return " ".join(out)


def _markers(prefix: str) -> str:
    return "".join(
        f'<marker id="{prefix}-arrow-{s}" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" fill="{EDGE_COLOURS[s]}"/></marker>'
        for s in STYLES
    )


def svg(drawing: Drawing, prefix: str = "g", standalone: bool = True) -> str:
    """The drawing as one `<svg>` element; `standalone` adds the XML namespace and the style sheet
    (an HTML page includes STYLE once instead). `prefix` keeps marker ids apart on a page of several."""
    view, layout = drawing.view, drawing.layout
    w, h = layout.width, layout.height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cnnspec-graph" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}" data-view="{escape(view.within)}">'
    ]
    if standalone:
        parts.append(f"<style>{STYLE}</style>")
    parts.append(f"<defs>{_markers(prefix)}</defs>")
    parts.append('<g class="edges">')
    for edge, route in zip(view.edges, layout.routes, strict=True):
        title = f"{edge.source} → {edge.target}" + (f" ({edge.count} inputs)" if edge.count > 1 else "")
        parts.append(
            f'<path class="edge {edge.style}" data-source="{escape(edge.source)}" data-target="{escape(edge.target)}" '
            f'data-count="{edge.count}" d="{_path(route)}" marker-end="url(#{prefix}-arrow-{edge.style})">'
            f"<title>{escape(title)} [{edge.style}]</title></path>"
        )
    parts.append("</g>")
    parts.append('<g class="boxes">')
    for box in view.boxes:
        p = layout.boxes[box.id]
        mark = drawing.marks.get(box.id)
        role = "layer" if box.is_layer else box.kind
        classes = " ".join(c for c in ("node", role, category(box), mark.status if mark else "") if c)
        attrs = (
            f'class="{classes}" data-id="{escape(box.id)}" data-kind="{escape(box.kind)}" '
            f'data-params="{box.params}" data-macs="{box.macs}" data-members="{len(box.members)}"'
        )
        if mark is not None:
            attrs += f' data-status="{mark.status}"'
        x, y = p.x - p.width / 2, p.y
        parts.append(f'<g {attrs} transform="translate({x:.1f},{y:.1f})">')
        parts.append(f"<title>{escape(tooltip(box))}</title>")
        parts.append(f'<rect width="{p.width:.1f}" height="{p.height:.1f}" rx="5"/>')
        for i, line in enumerate(drawing.text[box.id]):
            baseline = PAD_Y + i * LINE_HEIGHT + FONT_SIZE
            cls = ' class="title"' if i == 0 else ""
            parts.append(
                f'<text{cls} x="{p.width / 2:.1f}" y="{baseline:.1f}" text-anchor="middle">{escape(line)}</text>'
            )
        parts.append("</g>")
    parts.append("</g></svg>")
    return "".join(parts)
