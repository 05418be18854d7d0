"""`cnnspec diff`: what changed between two versions of a spec's architecture.

Both specs are checked statically; their primitive layers (after expanding residual,
repeat, blocks and groups) are paired up:

1. layers with the same user-given id are the same layer (an id is user-given when no
   part of it is an automatic `KIND_INDEX` name such as `relu_2`);
2. the rest are aligned by position and kind (a longest-common-subsequence alignment of
   the kind sequence, anchored on the pairs found by id), so an unnamed `relu` after an
   inserted layer is still the same `relu`.

A pair whose written parameters differ is *changed*; unpaired layers are *added* or
*removed*. Output shapes, parameter and MAC counts that differ as a consequence are
*effects*. The checkpoint report says which state_dict tensors of a model trained on OLD
still fit NEW, from the layer kinds' static tensor shapes (no torch).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from cnnspec.checker.graph import Graph, Node
from cnnspec.layers import REGISTRY, Shape

_AUTO = re.compile(r"^(?P<kind>[a-z0-9_]+)_(?P<index>\d+)$")


def is_named(node_id: str) -> bool:
    """Whether every part of a layer id was written by the user (not an automatic KIND_INDEX name)."""
    for part in node_id.split("."):
        m = _AUTO.match(part)
        if m and m.group("kind") in REGISTRY:
            return False
    return True


@dataclass(frozen=True)
class Change:
    """One parameter that differs: `field` from `old` to `new`."""

    field: str
    old: Any
    new: Any


@dataclass
class Pair:
    """A layer present in both specs."""

    old: Node
    new: Node
    changes: list[Change] = field(default_factory=list)

    @property
    def effects(self) -> bool:
        o, n = self.old, self.new
        return (o.output_shape, o.params, o.macs, o.receptive_field) != (
            n.output_shape,
            n.params,
            n.macs,
            n.receptive_field,
        )


@dataclass(frozen=True)
class TensorFit:
    """One state_dict entry of OLD or NEW and what becomes of it."""

    status: str  # kept | renamed | reshaped | dropped | new | unknown
    old_key: str | None
    new_key: str | None
    old_shape: Shape | None
    new_shape: Shape | None

    @property
    def fits(self) -> bool:
        return self.status in ("kept", "renamed")


@dataclass
class Checkpoint:
    """Which tensors of an OLD checkpoint load into NEW."""

    tensors: list[TensorFit] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # layers whose tensors are not known statically
    whole: list[str] = field(default_factory=list)  # unchanged layers of that sort: their tensors carry over whole

    def by_status(self, status: str) -> list[TensorFit]:
        return [t for t in self.tensors if t.status == status]

    @property
    def old_total(self) -> int:
        return sum(1 for t in self.tensors if t.old_key is not None)

    @property
    def fitting(self) -> int:
        return sum(1 for t in self.tensors if t.fits)

    @property
    def remap(self) -> dict[str, str]:
        """OLD key → NEW key for the tensors that fit under a new name."""
        return {t.old_key: t.new_key for t in self.by_status("renamed") if t.old_key and t.new_key}


@dataclass
class SpecDiff:
    """The architecture difference between two checked specs."""

    old_label: str
    new_label: str
    old: Graph
    new: Graph
    pairs: list[Pair]
    added: list[Node]
    removed: list[Node]
    input_change: Change | None
    checkpoint: Checkpoint
    settings: list[Change]

    @property
    def changed(self) -> list[Pair]:
        return [p for p in self.pairs if p.changes]

    @property
    def effects(self) -> list[Pair]:
        return [p for p in self.pairs if p.effects]

    @property
    def same(self) -> bool:
        """No layer added, removed or changed and the same input: the same architecture."""
        return not (self.added or self.removed or self.changed or self.input_change)

    @property
    def old_rf(self) -> tuple[int, int]:
        return _final_rf(self.old)

    @property
    def new_rf(self) -> tuple[int, int]:
        return _final_rf(self.new)


def _final_rf(graph: Graph) -> tuple[int, int]:
    return graph.node(graph.output).receptive_field if graph.nodes else (1, 1)


# --- pairing ---------------------------------------------------------------------------------


def match(old: list[Node], new: list[Node]) -> list[tuple[int, int]]:
    """Index pairs (old, new) of the same layer: by user-given id, else by position and kind."""
    new_index = {n.id: j for j, n in enumerate(new)}
    pairs: dict[int, int] = {}
    for i, n in enumerate(old):
        if is_named(n.id) and n.id in new_index:
            pairs[i] = new_index[n.id]
    paired_new = set(pairs.values())

    def key(nodes: list[Node], index: int, paired: bool) -> tuple[str, str]:
        return ("id", nodes[index].id) if paired else ("kind", nodes[index].kind)

    a = [key(old, i, i in pairs) for i in range(len(old))]
    b = [key(new, j, j in paired_new) for j in range(len(new))]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            continue
        for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
            if i not in pairs and j not in paired_new:
                pairs[i] = j
                paired_new.add(j)
    return sorted(pairs.items(), key=lambda p: p[1])


def _layer_changes(old: Node, new: Node, renamed: dict[str, str]) -> list[Change]:
    changes: list[Change] = []
    if old.id != new.id and (is_named(old.id) or is_named(new.id)):
        changes.append(Change("id", old.id, new.id))
    if old.kind != new.kind:
        changes.append(Change("kind", old.kind, new.kind))
    a = old.layer.model_dump(mode="json", exclude={"id", "inputs"})
    b = new.layer.model_dump(mode="json", exclude={"id", "inputs"})
    for name in [*a, *(k for k in b if k not in a)]:
        if a.get(name) != b.get(name):
            changes.append(Change(name, a.get(name), b.get(name)))
    if old.layer.inputs is not None or new.layer.inputs is not None:
        mapped = [renamed.get(i, i) for i in old.inputs]
        if mapped != list(new.inputs):
            changes.append(Change("inputs", list(old.inputs), list(new.inputs)))
    return changes


# --- checkpoint fit ----------------------------------------------------------------------------


def _tensors(node: Node) -> dict[str, Shape] | None:
    return node.layer.tensors(node.input_shapes)


def checkpoint_fit(pairs: list[Pair], added: list[Node], removed: list[Node]) -> Checkpoint:
    """Which OLD state_dict tensors load into NEW, tensor by tensor."""
    report = Checkpoint()
    for node in removed:
        for name, shape in (_tensors(node) or {}).items():
            report.tensors.append(TensorFit("dropped", f"{node.id}.{name}", None, shape, None))
        if _tensors(node) is None:
            report.unknown.append(node.id)
    for p in pairs:
        old_t, new_t = _tensors(p.old), _tensors(p.new)
        if old_t is None or new_t is None:
            if old_t is None and new_t is None and not p.changes and p.old.id == p.new.id:
                report.whole.append(p.new.id)  # the same opaque layer (e.g. an unchanged backbone)
                continue
            report.unknown.append(p.new.id)
            # The side that is known is listed, its fate unknown (the other side's tensors are not).
            for name, shape in (old_t or {}).items():
                report.tensors.append(TensorFit("unknown", f"{p.old.id}.{name}", None, shape, None))
            for name, shape in (new_t or {}).items():
                report.tensors.append(TensorFit("unknown", None, f"{p.new.id}.{name}", None, shape))
            continue
        for name in [*old_t, *(k for k in new_t if k not in old_t)]:
            ok, nk = f"{p.old.id}.{name}", f"{p.new.id}.{name}"
            os_, ns = old_t.get(name), new_t.get(name)
            if os_ is None:
                report.tensors.append(TensorFit("new", None, nk, None, ns))
            elif ns is None:
                report.tensors.append(TensorFit("dropped", ok, None, os_, None))
            elif os_ != ns:
                report.tensors.append(TensorFit("reshaped", ok, nk, os_, ns))
            else:
                report.tensors.append(TensorFit("kept" if ok == nk else "renamed", ok, nk, os_, ns))
    for node in added:
        tensors = _tensors(node)
        if tensors is None:
            report.unknown.append(node.id)
        for name, shape in (tensors or {}).items():
            report.tensors.append(TensorFit("new", None, f"{node.id}.{name}", None, shape))
    return report


# --- settings outside the model --------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out if out or not prefix else {prefix: {}}
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out |= _flatten(v, f"{prefix}.{i}")
        return out
    return {prefix: value}


def settings_changes(old: Graph, new: Graph) -> list[Change]:
    """Differences outside `model` (data, optimizer, schedule, train, export, name): informative only."""
    a = _flatten(old.spec.model_dump(mode="json", exclude={"model"}))
    b = _flatten(new.spec.model_dump(mode="json", exclude={"model"}))
    keys = [*a, *(k for k in b if k not in a)]
    return [Change(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


# --- the diff ------------------------------------------------------------------------------


def diff_graphs(old: Graph, new: Graph, old_label: str = "OLD", new_label: str = "NEW") -> SpecDiff:
    """Compare two checked specs."""
    index = match(old.nodes, new.nodes)
    paired_old = {i for i, _ in index}
    paired_new = {j for _, j in index}
    renamed = {old.nodes[i].id: new.nodes[j].id for i, j in index}
    pairs = []
    for i, j in index:
        o, n = old.nodes[i], new.nodes[j]
        pairs.append(Pair(o, n, _layer_changes(o, n, renamed)))
    added = [n for j, n in enumerate(new.nodes) if j not in paired_new]
    removed = [n for i, n in enumerate(old.nodes) if i not in paired_old]
    input_change = None
    if old.input_shape != new.input_shape:
        input_change = Change("input", list(old.input_shape), list(new.input_shape))
    return SpecDiff(
        old_label,
        new_label,
        old,
        new,
        pairs,
        added,
        removed,
        input_change,
        checkpoint_fit(pairs, added, removed),
        settings_changes(old, new),
    )


def diff_specs(old: str, new: str) -> SpecDiff:
    """Diff two specs named by file paths or git revisions (`REV:path`); raises CnnspecError when one is invalid."""
    from cnnspec.checker.checker import check
    from cnnspec.review.sources import load_spec

    return diff_graphs(check(load_spec(old)), check(load_spec(new)), old, new)


def numel(shape: Shape | None) -> int:
    return math.prod(shape) if shape is not None else 0
