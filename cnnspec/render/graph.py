"""`cnnspec graph`: a checked graph drawn as SVG, HTML (one page, groups opened by clicking) or PNG.

The HTML page holds the view at the asked depth and, for each group it folds, the view of that
group's inside at the same depth below it (cnnspec.review.graphview.groups_below), each laid out
here; clicking a group shows its view. SVG and PNG are the one view at the depth.
"""

from __future__ import annotations

from html import escape
from pathlib import PurePath

from cnnspec.checker.graph import Graph
from cnnspec.errors import CnnspecError, Diagnostic, Location
from cnnspec.layers.base import fmt_shape
from cnnspec.render.graph_boxes import draw
from cnnspec.render.graph_svg import svg
from cnnspec.render.html_page import LEGEND_EDGES, html_text, page
from cnnspec.render.summary import human
from cnnspec.review.graphview import groups_below, view

FORMATS = ("svg", "html", "png")


def graph_format(path: str) -> str:
    """The format to write to `path`, from its extension; CnnspecError for any other."""
    suffix = PurePath(path).suffix.lower().lstrip(".")
    if suffix == "htm":
        return "html"
    if suffix not in FORMATS:
        said = f".{suffix} files" if suffix else "a file without an extension"
        raise CnnspecError(
            Diagnostic(
                f"cnnspec graph cannot write {said}",
                Location(path),
                hint="name the file with one of: .svg, .html, .png (e.g. model.svg)",
            )
        )
    return suffix


def to_svg(graph: Graph, depth: int | None = None) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + svg(draw(view(graph, depth))) + "\n"


def totals_line(graph: Graph) -> str:
    rf = graph.node(graph.output).receptive_field if graph.nodes else (1, 1)
    return (
        f"{len(graph.nodes)} layers · {graph.total_params:,} params · {human(graph.macs)} MACs · "
        f"receptive field {rf[0] if rf[0] == rf[1] else f'{rf[0]}×{rf[1]}'} · "
        f"{fmt_shape(graph.input_shape)} → {fmt_shape(graph.output_shape)}"
    )


def to_html(graph: Graph, depth: int | None = None) -> str:
    name = graph.spec.name
    header = (
        f"<h1>{html_text(name)}</h1><p>{escape(totals_line(graph))}</p>"
        f'<p class="legend">{LEGEND_EDGES}'
        + (" · click a blue box to open its layers" if depth is not None else "")
        + ' · hover a box for its parameters and MACs</p><nav class="crumbs"></nav>'
    )
    sections = []
    for index, path in enumerate(["", *(groups_below(graph, depth) if depth is not None else [])]):
        drawing = draw(view(graph, depth, path))
        hidden = " hidden" if path else ""
        sections.append(
            f'<section class="view" data-view="{escape(path)}"{hidden}>{svg(drawing, f"v{index}", False)}</section>'
        )
    return page(f"{name}: architecture", header, "\n".join(sections))


def to_png(graph: Graph, depth: int | None = None, where: str | None = None) -> bytes:
    """The view as PNG; CnnspecError (located at `where`) when it is too large (graph_png.MAX_PIXELS)."""
    from cnnspec.render.graph_png import png

    return png(draw(view(graph, depth)), where=where)
