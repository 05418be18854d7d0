"""A layered (Sugiyama-style) layout of a DAG, top to bottom, written here rather than taken from a library.

Why by hand: the graphs are CNNs, long chains with skips and short parallel branches, for which
the textbook steps below give a clear drawing; they run in well under a second for 1,000 boxes in
pure Python; and the core install stays free of a system binary (graphviz) and of a new dependency
(grandalf, the pure-Python Sugiyama package on PyPI, has had no release since 2023). docs/review.md
says so too.

1. Ranks: the longest path from a source (every box sits one rank below its lowest input).
2. An edge that spans several ranks gets a dummy point on each rank between, so it is routed
   around the boxes it passes rather than through them.
3. Order within a rank: barycentre sweeps (down, then up, four times), starting from the order
   the boxes were given in.
4. x: each box moves towards the mean x of its neighbours on the rank above (down sweeps) or below
   (up sweeps), keeping the rank's order and the gap between boxes; the least-squares placement
   under those constraints is an isotonic regression (pool adjacent violators), exact and linear.

Edges that would point upwards (a cycle made by folding groups) are drawn but do not rank.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

GAP_X = 28.0  # between boxes on a rank
GAP_Y = 34.0  # between ranks
DUMMY_WIDTH = 8.0
MARGIN = 16.0
SWEEPS = 4


@dataclass(frozen=True)
class Placed:
    x: float  # centre
    y: float  # top
    width: float
    height: float


@dataclass
class Layout:
    boxes: dict[str, Placed]
    routes: list[list[tuple[float, float]]]  # one per edge, in the given order: source bottom … target top
    width: float
    height: float
    ranks: dict[str, int]


def layered(sizes: dict[str, tuple[float, float]], edges: list[tuple[str, str]], sweeps: int = SWEEPS) -> Layout:
    """Place the boxes `sizes` (id → (width, height), in an order where sources mostly come first) and
    route `edges` (source id, target id)."""
    order = list(sizes)
    position = {b: i for i, b in enumerate(order)}
    forward = [(s, t) for s, t in edges if position[s] < position[t]]
    rank = {b: 0 for b in order}
    preds: dict[str, list[str]] = {b: [] for b in order}
    for s, t in forward:
        preds[t].append(s)
    for b in order:
        if preds[b]:
            rank[b] = max(rank[p] for p in preds[b]) + 1

    # Dummy points: a chain for every forward edge that spans more than one rank.
    widths = {b: sizes[b][0] for b in order}
    up: dict[str, list[str]] = {b: [] for b in order}
    down: dict[str, list[str]] = {b: [] for b in order}
    chains: dict[int, list[str]] = {}
    for index, (s, t) in enumerate(edges):
        if position[s] >= position[t]:
            continue
        chain = [s]
        for r in range(rank[s] + 1, rank[t]):
            d = f"\0{index}.{r}"
            rank[d] = r
            widths[d] = DUMMY_WIDTH
            up[d], down[d] = [], []
            chain.append(d)
        chain.append(t)
        for a, b in itertools.pairwise(chain):
            down[a].append(b)
            up[b].append(a)
        chains[index] = chain

    levels: list[list[str]] = [[] for _ in range(max(rank.values(), default=0) + 1)]
    first = {b: position[b] if b in position else position[_owner_of(b, edges)] + 0.5 for b in rank}
    for b in sorted(rank, key=lambda b: first[b]):
        levels[rank[b]].append(b)
    _order(levels, up, down, sweeps)

    heights = [max((sizes[b][1] for b in level if b in sizes), default=0.0) for level in levels]
    tops = []
    y = MARGIN
    for h in heights:
        tops.append(y)
        y += h + GAP_Y
    xs = _place(levels, widths, up, down, sweeps)
    left = min((xs[b] - widths[b] / 2 for b in xs), default=0.0)
    shift = MARGIN - left
    placed: dict[str, Placed] = {}
    for b in order:
        r = rank[b]
        w, h = sizes[b]
        placed[b] = Placed(xs[b] + shift, tops[r] + (heights[r] - h) / 2, w, h)
    routes: list[list[tuple[float, float]]] = []
    for index, (s, t) in enumerate(edges):
        src, dst = placed[s], placed[t]
        if index not in chains:  # upwards: straight from the source's side
            routes.append(
                [(src.x + src.width / 2, src.y + src.height / 2), (dst.x + dst.width / 2, dst.y + dst.height / 2)]
            )
            continue
        points = [(src.x, src.y + src.height)]
        for d in chains[index][1:-1]:
            r = rank[d]
            points.append((xs[d] + shift, tops[r]))
            points.append((xs[d] + shift, tops[r] + heights[r]))
        points.append((dst.x, dst.y))
        routes.append(points)
    width = max((p.x + p.width / 2 for p in placed.values()), default=0.0) + MARGIN
    dummy_right = max((xs[d] + shift for d in xs if d not in sizes), default=0.0) + MARGIN
    return Layout(placed, routes, max(width, dummy_right), y - GAP_Y + MARGIN, {b: rank[b] for b in order})


def _owner_of(dummy: str, edges: list[tuple[str, str]]) -> str:
    return edges[int(dummy[1:].split(".")[0])][0]


def _order(levels: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]], sweeps: int) -> None:
    """Reorder each rank by the barycentre of its neighbours' positions, in place."""
    for _ in range(sweeps):
        for neighbours, seq in ((up, range(1, len(levels))), (down, range(len(levels) - 2, -1, -1))):
            for r in seq:
                adjacent = levels[r - 1] if neighbours is up else levels[r + 1]
                at = {b: i for i, b in enumerate(adjacent)}
                level = levels[r]
                keys = {}
                for i, b in enumerate(level):
                    near = [at[n] for n in neighbours[b] if n in at]
                    keys[b] = sum(near) / len(near) if near else float(i)
                level.sort(key=lambda b: keys[b])


def _place(
    levels: list[list[str]],
    widths: dict[str, float],
    up: dict[str, list[str]],
    down: dict[str, list[str]],
    sweeps: int,
) -> dict[str, float]:
    """x centres: each rank packed, then pulled towards its neighbours' mean, keeping order and gaps."""
    xs: dict[str, float] = {}
    for level in levels:
        x = 0.0
        for b in level:
            xs[b] = x + widths[b] / 2
            x += widths[b] + GAP_X
    for _ in range(sweeps):
        for neighbours, seq in ((up, range(1, len(levels))), (down, range(len(levels) - 2, -1, -1))):
            for r in seq:
                level = levels[r]
                want = []
                for b in level:
                    near = neighbours[b]
                    want.append(sum(xs[n] for n in near) / len(near) if near else xs[b])
                for b, x in zip(level, _isotonic(level, widths, want), strict=True):
                    xs[b] = x
    return xs


def _isotonic(level: list[str], widths: dict[str, float], want: list[float]) -> list[float]:
    """The x centres closest (least squares) to `want` that keep `level`'s order and the gaps:
    x[i] - x[i-1] >= (w[i-1] + w[i]) / 2 + GAP_X. Pool adjacent violators on x minus the offsets."""
    offsets = [0.0]
    for a, b in itertools.pairwise(level):
        offsets.append(offsets[-1] + (widths[a] + widths[b]) / 2 + GAP_X)
    targets = [w - o for w, o in zip(want, offsets, strict=True)]
    blocks: list[list[float]] = []  # [mean, count]
    for t in targets:
        blocks.append([t, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, c2 = blocks.pop()
            m1, c1 = blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    values: list[float] = []
    for mean, count in blocks:
        values += [mean] * int(count)
    return [v + o for v, o in zip(values, offsets, strict=True)]
