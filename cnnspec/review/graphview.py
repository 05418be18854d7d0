"""What `cnnspec graph` draws, computed from a checked graph: the boxes and edges of one view.

A view is the layer DAG at a depth. Layer ids are dotted paths (`layer1.0.conv1`: a layer of a
block of a repeat); at depth N every layer whose id has more than N parts is folded into the box
of its first N parts (a *group*: a block, repeat or group of the spec, or a residual's body), which
counts its layers, parameters and MACs. Depth None is every layer, one box each.

`view(graph, depth, within=PATH)` is the inside of the group PATH, its layers folded at `depth`
parts below PATH; the layers it reads from outside are *external* boxes. The HTML page opens a
group by showing that view (cnnspec.render.graph).

Each input of a layer is one edge (drawn from the box of its source to the box of the layer); edges
that folding joins between the same two boxes become one, counting the inputs it stands for. An
edge's style says what it carries:

- `shape`: the input lends only its shape (a residual's shortcut reads the body's output to match it);
- `concat`: into a concat (channels stacked);
- `residual`: into any other merge (add, multiply, a shortcut: a value added back);
- `seq`: everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnspec.checker.graph import Graph, Node
from cnnspec.layers import Shape

if TYPE_CHECKING:
    from cnnspec.review.diff import SpecDiff

INPUT = "input"

# Short names of the fields a box shows (the full names are in its tooltip).
_SHORT = {
    "out_channels": "out",
    "out_features": "out",
    "kernel_size": "k",
    "stride": "s",
    "padding": "p",
    "dilation": "d",
    "groups": "g",
    "output_size": "size",
}

STYLES = ("seq", "residual", "concat", "shape")


@dataclass(frozen=True)
class Box:
    """One box of a view: a layer, a folded group of layers, the model's input, or (inside a group's
    view) a layer outside it that the group reads."""

    id: str
    kind: str  # a layer kind, or "group", "input", "external"
    shape: Shape
    members: tuple[str, ...] = ()  # the layer ids it stands for (one for a layer)
    params: int = 0
    macs: int = 0
    receptive_field: tuple[int, int] = (1, 1)
    settings: dict[str, Any] = field(default_factory=dict)  # the fields written (not defaults), full names

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    @property
    def is_layer(self) -> bool:
        return self.kind not in ("group", "input", "external")

    @property
    def label(self) -> str:
        """The key parameters, shortly: `out=64, k=3, s=2` for a layer, `16 layers` for a group."""
        if self.is_group:
            return f"{len(self.members)} layers"
        return ", ".join(f"{_SHORT.get(k, k)}={value_text(v)}" for k, v in self.settings.items())


@dataclass(frozen=True)
class Edge:
    source: str  # a box id
    target: str
    style: str  # one of STYLES
    count: int = 1  # the layer inputs it stands for


@dataclass
class View:
    """The boxes (sources before the layers that read them) and edges of one drawing."""

    within: str  # "" for the whole model, else the group's path
    depth: int | None
    boxes: list[Box]
    edges: list[Edge]

    def box(self, box_id: str) -> Box:
        for b in self.boxes:
            if b.id == box_id:
                return b
        raise KeyError(box_id)

    @property
    def groups(self) -> list[Box]:
        return [b for b in self.boxes if b.is_group]


def value_text(v: Any) -> str:
    if isinstance(v, list) and len(v) == 2 and v[0] == v[1]:
        return str(v[0])
    if isinstance(v, list):
        return "×".join(map(str, v)) if all(isinstance(x, int) for x in v) else str(v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def settings(node: Node) -> dict[str, Any]:
    """The fields of a layer that were written or inferred away from their defaults (id and inputs aside)."""
    dumped = node.layer.model_dump(mode="json", exclude={"id", "inputs"}, exclude_defaults=True)
    return {k: v for k, v in dumped.items() if v is not None}


def edge_style(node: Node, index: int) -> str:
    """How the edge of `node`'s input number `index` is drawn (the module docstring)."""
    layer = node.layer
    if layer.value_inputs is not None and index >= layer.value_inputs:
        return "shape"
    if node.kind == "concat":
        return "concat"
    if layer.many_inputs:
        return "residual"
    return "seq"


def _parts(node_id: str) -> list[str]:
    return node_id.split(".")


def owner(node_id: str, within: str, depth: int | None) -> str | None:
    """The box that layer `node_id` is drawn in: itself, or the group of its first parts; None when it
    is outside `within`."""
    parts = _parts(node_id)
    base = _parts(within) if within else []
    if parts[: len(base)] != base or len(parts) == len(base):
        return None
    if depth is None or len(parts) <= len(base) + depth:
        return node_id
    return ".".join(parts[: len(base) + depth])


def view(graph: Graph, depth: int | None = None, within: str = "") -> View:
    """The view of `graph` (or of the group `within`) with layers folded below `depth` parts."""
    if depth is not None and depth < 1:
        raise ValueError("depth must be at least 1")
    owners = {n.id: owner(n.id, within, depth) for n in graph.nodes}
    grouped: dict[str, list[Node]] = {}
    for n in graph.nodes:
        o = owners[n.id]
        if o is not None:
            grouped.setdefault(o, []).append(n)
    boxes: list[Box] = []
    external: dict[str, Box] = {}
    edges: dict[tuple[str, str], Edge] = {}
    plain: list[Edge] = []
    if not within:
        boxes.append(Box(INPUT, "input", graph.input_shape))
    made: set[str] = set()
    for n in graph.nodes:
        o = owners[n.id]
        if o is None:
            continue
        if o not in made:
            made.add(o)
            members = grouped[o]
            if o == n.id and len(members) == 1 and members[0].id == o:
                boxes.append(Box(o, n.kind, n.output_shape, (n.id,), n.params, n.macs, n.receptive_field, settings(n)))
            else:
                last = _last_of(members, graph)
                boxes.append(
                    Box(
                        o,
                        "group",
                        last.output_shape,
                        tuple(m.id for m in members),
                        sum(m.params for m in members),
                        sum(m.macs for m in members),
                        last.receptive_field,
                    )
                )
        for index, source in enumerate(n.inputs):
            style = edge_style(n, index)
            src = (INPUT if not within else None) if source == INPUT else owners.get(source)
            if src is None:  # read from outside the group: an external box
                if source not in external:
                    shape = graph.input_shape if source == INPUT else graph.node(source).output_shape
                    external[source] = Box(source, "external", shape)
                src = source
            if src == o:
                continue  # inside one folded group
            if o == n.id and (src in (source, INPUT)):
                plain.append(Edge(src, o, style))  # a layer's own input: one edge each
                continue
            key = (src, o)
            had = edges.get(key)
            if had is None:
                edges[key] = Edge(src, o, style)
            else:
                edges[key] = Edge(src, o, _stronger(had.style, style), had.count + 1)
    ordered = [*external.values(), *boxes] if within else boxes
    return View(within, depth, ordered, [*plain, *edges.values()])


def _last_of(members: list[Node], graph: Graph) -> Node:
    """The member whose output leaves the group: the one no other member reads (the last such)."""
    ids = {m.id for m in members}
    read = {i for m in members for i in m.inputs if i in ids}
    leaving = [m for m in members if m.id not in read]
    if graph.output in ids:
        return graph.node(graph.output)
    return leaving[-1] if leaving else members[-1]


def _stronger(a: str, b: str) -> str:
    """The style a joined edge keeps: seq when any input it joins is plain data flow, then concat, residual, shape."""
    rank = {"seq": 0, "concat": 1, "residual": 2, "shape": 3}
    return a if rank[a] <= rank[b] else b


def groups_below(graph: Graph, depth: int, within: str = "") -> list[str]:
    """Every group path that a view at `depth` (and the views of its groups, recursively) folds."""
    out: list[str] = []
    stack = [within]
    while stack:
        path = stack.pop(0)
        for box in view(graph, depth, path).groups:
            out.append(box.id)
            stack.append(box.id)
    return out


# --- what a diff marks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """How a diff marks one box: `added`, `removed`, `changed` (its parameters), or `effect` (its shape
    or counts changed because of a change upstream); `notes` are the lines the box shows for it."""

    status: str
    notes: tuple[str, ...] = ()


def diff_marks(d: SpecDiff) -> tuple[dict[str, Mark], dict[str, Mark]]:
    """The marks of the OLD graph's layers and of the NEW graph's (by layer id) for a diff."""
    from cnnspec.layers.base import fmt_shape

    old: dict[str, Mark] = {n.id: Mark("removed", ("removed",)) for n in d.removed}
    new: dict[str, Mark] = {n.id: Mark("added", ("added",)) for n in d.added}
    for p in d.pairs:
        notes = tuple(f"{c.field}: {value_text(c.old)} → {value_text(c.new)}" for c in p.changes)
        effects: tuple[str, ...] = ()
        if p.old.output_shape != p.new.output_shape:
            effects += (f"shape was {fmt_shape(p.old.output_shape)}",)
        if p.old.params != p.new.params:
            effects += (f"params {p.old.params:,} → {p.new.params:,}",)
        if not effects and p.old.macs != p.new.macs:
            effects += (f"MACs {p.old.macs:,} → {p.new.macs:,}",)
        if not effects and p.old.receptive_field != p.new.receptive_field:
            (a, _), (b, _) = p.old.receptive_field, p.new.receptive_field
            effects += (f"receptive field {a} → {b}",)
        if p.changes:
            old[p.old.id] = Mark("changed", notes)
            new[p.new.id] = Mark("changed", notes + effects)
        elif p.effects:
            old[p.old.id] = Mark("effect", ())
            new[p.new.id] = Mark("effect", effects)
    return old, new
