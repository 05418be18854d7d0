"""Reading a drawn graph back: the boxes and edges of the SVG and HTML that `cnnspec graph` and
`cnnspec diff --format html` write, by their classes and data attributes (cnnspec/render/graph_svg.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class Drawn:
    """One drawing: its boxes (data-id → attributes) and edges (source, target, style, count)."""

    boxes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, str, int]] = field(default_factory=list)

    def with_class(self, name: str) -> dict[str, dict[str, str]]:
        return {k: v for k, v in self.boxes.items() if name in v.get("class", "").split()}

    @property
    def layers(self) -> dict[str, dict[str, str]]:
        return self.with_class("layer")

    def edge_pairs(self) -> Counter[tuple[str, str]]:
        return Counter((s, t) for s, t, _, _ in self.edges)


def _classes(attrs: dict[str, str]) -> list[str]:
    return attrs.get("class", "").split()


def _add(drawn: Drawn, attrs: dict[str, str]) -> None:
    classes = _classes(attrs)
    if "node" in classes:
        drawn.boxes[attrs["data-id"]] = attrs
    elif "edge" in classes:
        style = next(c for c in classes if c != "edge")
        drawn.edges.append((attrs["data-source"], attrs["data-target"], style, int(attrs["data-count"])))


def read_svg(text: str) -> Drawn:
    """A standalone SVG file (it is XML: parsed strictly)."""
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == f"{SVG}svg"
    drawn = Drawn()
    for element in root.iter():
        _add(drawn, {k: v for k, v in element.attrib.items()})
    return drawn


class _Page(HTMLParser):
    """Every drawing of a page, by the `data-view` of the `<svg>` it is in (and the side of a diff)."""

    def __init__(self) -> None:
        super().__init__()
        self.drawings: dict[str, Drawn] = {}
        self.current: Drawn | None = None
        self.side = ""
        self.sections: list[dict[str, str]] = []
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "section":
            self.sections.append(a)
            if "side" in _classes(a):
                self.side = next(c for c in _classes(a) if c != "side")
        if tag == "svg":
            key = self.side or a.get("data-view", "")
            self.current = self.drawings.setdefault(key, Drawn())
        elif self.current is not None:
            _add(self.current, a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.current = None


def read_html(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page
