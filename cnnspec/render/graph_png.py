"""A laid-out view rasterised to PNG with Pillow: `cnnspec graph -o FILE.png`, no system binary.

Pillow is the one module it needs: it comes with the `png` extra (`pip install 'cnnspec[png]'`, a few
MB) and with `train`; the core install writes SVG and HTML without it, and a PNG asked for there ends
with the line that names the extra (cnnspec/extras.py). The text is set in DejaVu Sans Mono where the
system has it (most Linux distributions), else in the font Pillow ships.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from cnnspec.errors import CnnspecError, Diagnostic, Location
from cnnspec.render.graph_boxes import FONT_SIZE, LINE_HEIGHT, PAD_Y, Drawing, category

FILLS = {
    "conv": "#dbeafe",
    "norm": "#dcfce7",
    "act": "#f1f5f9",
    "pool": "#ffedd5",
    "dense": "#fce7f3",
    "merge": "#ede9fe",
    "reshape": "#f8fafc",
    "backbone": "#e0e7ff",
    "input": "#fef9c3",
    "external": "#f8fafc",
    "group": "#e0f2fe",
}
MARKS = {"added": ("#bbf7d0", "#15803d"), "removed": ("#fecaca", "#b91c1c"), "changed": ("#fef08a", "#a16207")}
EDGES = {"seq": "#64748b", "residual": "#7c3aed", "concat": "#0284c7", "shape": "#94a3b8"}
FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/System/Library/Fonts/Menlo.ttc",
    "C:/Windows/Fonts/consola.ttf",
)
MAX_SCALED_SIDE = 12000  # drawn at 2× unless that makes a side longer than this
# The most pixels a PNG is drawn with (about 150 MB of RGB while drawn; densenet121 drawn whole is 14.6 M).
# A larger drawing is refused: scaled down to fit, its 11-pixel text would be unreadable.
MAX_PIXELS = 50_000_000


def scale_for(width: float, height: float, max_pixels: int = MAX_PIXELS, where: str | None = None) -> float:
    """How much a `width` × `height` drawing is enlarged in its PNG: 2, or 1 when 2 makes it too large;
    CnnspecError when even 1 makes it more than `max_pixels`."""
    if max(width, height) * 2 <= MAX_SCALED_SIDE and width * height * 4 <= max_pixels:
        return 2.0
    if width * height <= max_pixels:
        return 1.0
    raise CnnspecError(
        Diagnostic(
            f"the graph is too large for PNG: {round(width):,} × {round(height):,} pixels, "
            f"more than the {max_pixels:,} a PNG is drawn with",
            Location(where) if where else None,
            hint="write .svg or .html (no size limit), or fold blocks with --depth N",
        )
    )


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in FONT_FILES:
        if Path(name).is_file():
            return ImageFont.truetype(name, round(size))
    return ImageFont.load_default(size)


def _bezier(p0: tuple[float, float], p1: tuple[float, float], steps: int = 12) -> list[tuple[float, float]]:
    """The vertical S-curve the SVG draws from p0 to p1, as points."""
    (x0, y0), (x1, y1) = p0, p1
    mid = (y0 + y1) / 2
    out = []
    for i in range(steps + 1):
        t = i / steps
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        out.append((a * x0 + b * x0 + c * x1 + d * x1, a * y0 + b * mid + c * mid + d * y1))
    return out


def png(drawing: Drawing, max_pixels: int = MAX_PIXELS, where: str | None = None) -> bytes:
    """The drawing as PNG bytes; CnnspecError (located at `where`, the file to write) when it would have
    more than `max_pixels` (scale_for)."""
    layout = drawing.layout
    scale = scale_for(layout.width, layout.height, max_pixels, where)
    image = Image.new("RGB", (max(1, round(layout.width * scale)), max(1, round(layout.height * scale))), "white")
    pen = ImageDraw.Draw(image)
    font = _font(FONT_SIZE * scale)

    def s(p: tuple[float, float]) -> tuple[float, float]:
        return (p[0] * scale, p[1] * scale)

    for edge, route in zip(drawing.view.edges, layout.routes, strict=True):
        points: list[tuple[float, float]] = [route[0]]
        for i in range(1, len(route)):
            points += _bezier(route[i - 1], route[i])[1:] if i % 2 == 1 else [route[i]]
        colour = EDGES[edge.style]
        pen.line(
            [s(p) for p in points], fill=colour, width=max(1, round(scale * (1.8 if edge.style != "seq" else 1.2)))
        )
        x, y = s(route[-1])
        a = 4 * scale
        pen.polygon([(x, y), (x - a, y - 2 * a), (x + a, y - 2 * a)], fill=colour)
    for box in drawing.view.boxes:
        p = layout.boxes[box.id]
        mark = drawing.marks.get(box.id)
        fill, outline, width = FILLS.get(category(box), "#ffffff"), "#475569", 1
        if box.is_group:
            outline, width = "#0369a1", 2
        if mark is not None and mark.status in MARKS:
            (fill, outline), width = MARKS[mark.status], 3
        elif mark is not None:  # an effect: the outline says so
            outline, width = "#ea580c", 3
        left, top = (p.x - p.width / 2) * scale, p.y * scale
        pen.rounded_rectangle(
            (left, top, left + p.width * scale, top + p.height * scale),
            radius=5 * scale,
            fill=fill,
            outline=outline,
            width=round(width * scale),
        )
        for i, line in enumerate(drawing.text[box.id]):
            centre = (p.x * scale, top + (PAD_Y + i * LINE_HEIGHT + LINE_HEIGHT / 2) * scale)
            pen.text(centre, line, fill="#0f172a", font=font, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
