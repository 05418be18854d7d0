"""Renderers for a SpecDiff (cnnspec.review.diff): coloured text (rich), Markdown for a pull-request comment, JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cnnspec.checker.graph import Node
from cnnspec.layers.base import fmt_shape
from cnnspec.render import markdown as md
from cnnspec.render.summary import NaturalWidth, human
from cnnspec.review.diff import Change, Pair, SpecDiff, TensorFit, numel
from cnnspec.terminal import cell, printable

MAX_LISTED = 12
"""Tensors listed per group in text and Markdown (JSON lists all)."""


def effect_cells(p: Pair) -> tuple[str, str, str]:
    """A layer downstream of a change: its output shape, params and MACs, each `old → new` where it changed."""
    o, n = p.old, p.new
    shape = (
        _shape(n.output_shape)
        if o.output_shape == n.output_shape
        else f"{_shape(o.output_shape)} → {_shape(n.output_shape)}"
    )
    params = f"{n.params:,}" if o.params == n.params else f"{o.params:,} → {n.params:,}"
    macs = human(n.macs) if o.macs == n.macs else f"{human(o.macs)} → {human(n.macs)}"
    return shape, params, macs


def _shape(shape: Any) -> str:
    if shape is None:
        return "—"
    return fmt_shape(tuple(shape)) if len(shape) else "scalar"


def _value(v: Any) -> str:
    if isinstance(v, list) and v and all(isinstance(x, int) for x in v) and len(v) <= 4:
        return "[" + ", ".join(map(str, v)) + "]"
    if v is None:
        return "—"
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)


def _delta(old: float, new: float) -> str:
    d = new - old
    if d == 0:
        return "±0"
    pct = f" ({d / old:+.1%})" if old else ""
    return f"{d:+,}{pct}" if isinstance(d, int) else f"{d:+g}{pct}"


def _rf(rf: tuple[int, int]) -> str:
    return str(rf[0]) if rf[0] == rf[1] else f"{rf[0]}×{rf[1]}"


def _change(c: Change) -> str:
    return f"{c.field}: {_value(c.old)} → {_value(c.new)}"


def _tensor_line(t: TensorFit) -> str:
    if t.status == "reshaped":
        return f"{t.new_key}: {_shape(t.old_shape)} → {_shape(t.new_shape)}"
    if t.status == "renamed":
        return f"{t.old_key} → {t.new_key} ({_shape(t.new_shape)})"
    return f"{t.old_key or t.new_key} ({_shape(t.old_shape if t.old_shape is not None else t.new_shape)})"


_TENSOR_GROUPS = (
    ("renamed", "fit under a new name"),
    ("reshaped", "no longer fit (shape changed)"),
    ("dropped", "have no place in NEW"),
    ("new", "start from initialisation"),
    ("unknown", "may or may not fit (the other side is not known statically)"),
)


_STYLES = {"renamed": "cyan", "reshaped": "yellow", "dropped": "red", "new": "green", "unknown": "dim"}


def totals(d: SpecDiff) -> list[tuple[str, str, str, str]]:
    o, n = d.old, d.new
    return [
        ("params", f"{o.total_params:,}", f"{n.total_params:,}", _delta(o.total_params, n.total_params)),
        (
            "trainable",
            f"{o.trainable_params:,}",
            f"{n.trainable_params:,}",
            _delta(o.trainable_params, n.trainable_params),
        ),
        ("MACs", f"{o.macs:,} ({human(o.macs)})", f"{n.macs:,} ({human(n.macs)})", _delta(o.macs, n.macs)),
        ("receptive field", _rf(d.old_rf), _rf(d.new_rf), _delta(max(d.old_rf), max(d.new_rf))),
        (
            "output",
            _shape(o.output_shape),
            _shape(n.output_shape),
            "same" if o.output_shape == n.output_shape else "changed",
        ),
    ]


def checkpoint_summary(d: SpecDiff, name: Callable[[str], str] = str) -> str:
    """One line on the checkpoint fit; `name` writes a layer id for the format it goes into."""
    ck = d.checkpoint
    old_values = sum(numel(t.old_shape) for t in ck.tensors if t.old_key)
    fit_values = sum(numel(t.old_shape) for t in ck.tensors if t.fits)
    text = (
        f"{ck.fitting} of {ck.old_total} tensors of an OLD checkpoint fit NEW ({fit_values:,} of {old_values:,} values)"
    )
    if ck.whole:
        text += f"; {', '.join(map(name, ck.whole))}: unchanged, all tensors carry over (not listed)"
    if ck.unknown:
        text += f"; tensors not known statically for {', '.join(map(name, ck.unknown))}"
    return text


# --- text ------------------------------------------------------------------------------------


def to_text(d: SpecDiff) -> Any:
    """A rich renderable: changed/added/removed layers, effects, totals and checkpoint fit.

    Every line and cell is written through cnnspec.terminal (`printable`, `cell`): a spec's strings
    (its name, ids, values, a path) may hold escape sequences a terminal would act on.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def line(text: str, style: str = "") -> Text:
        return Text(printable(text), style=style)

    parts: list[Any] = []
    title = line(f"{d.old_label} → {d.new_label}", "bold")
    names = d.new.spec.name if d.old.spec.name == d.new.spec.name else f"{d.old.spec.name} → {d.new.spec.name}"
    title.append(printable(f"  ({names})"))
    parts.append(title)
    if d.same:
        parts.append(line("same architecture", "green"))
    if d.input_change:
        parts.append(line(f"~ input: {_shape(d.input_change.old)} → {_shape(d.input_change.new)}", "yellow"))
    for p in d.changed:
        changed = line(f"~ {p.new.id} ({p.new.kind})", "yellow")
        changed.append(printable("  " + "; ".join(_change(c) for c in p.changes)))
        parts.append(changed)
    for n in d.added:
        parts.append(line(f"+ {n.id} ({n.kind})  {_shape(n.output_shape)}, {n.params:,} params", "green"))
    for n in d.removed:
        parts.append(line(f"- {n.id} ({n.kind})  {_shape(n.output_shape)}, {n.params:,} params", "red"))

    if d.effects:
        table = Table(title="layers whose shape or counts changed", title_justify="left")
        for col in ("layer", "output shape", "params", "MACs", "RF"):
            table.add_column(col, justify="left" if col in ("layer", "output shape") else "right")
        for p in d.effects:
            o, n = p.old, p.new
            shape, params, macs = effect_cells(p)
            rf = (
                _rf(o.receptive_field)
                if o.receptive_field == n.receptive_field
                else f"{_rf(o.receptive_field)} → {_rf(n.receptive_field)}"
            )
            table.add_row(*(cell(x) for x in (n.id, shape, params, macs, rf)))
        parts.append(table)

    sums = Table(show_header=True, box=None, pad_edge=False)
    for col in ("", "old", "new", "Δ"):
        sums.add_column(col, justify="left" if not col else "right")
    for row in totals(d):
        sums.add_row(*(cell(x) for x in row))
    parts.append(sums)

    parts.append(line("checkpoint: " + checkpoint_summary(d)))
    for status, what in _TENSOR_GROUPS:
        group = d.checkpoint.by_status(status)
        if group:
            parts.append(line(f"  {len(group)} {what}:", _STYLES[status]))
            for t in group[:MAX_LISTED]:
                parts.append(line(f"    {_tensor_line(t)}"))
            if len(group) > MAX_LISTED:
                parts.append(line(f"    … and {len(group) - MAX_LISTED} more"))
    if d.settings:
        parts.append(line("other settings (not architecture):", "dim"))
        for c in d.settings:
            parts.append(line(f"  {_change(c)}", "dim"))
    return NaturalWidth(Group(*parts))


def to_plain_text(d: SpecDiff) -> str:
    """`to_text` without colours, as a file gets it (`cnnspec diff -o FILE`)."""
    import io

    from rich.console import Console

    sink = io.StringIO()
    Console(file=sink, color_system=None, highlight=False, soft_wrap=True, width=200).print(to_text(d))
    return sink.getvalue()


# --- markdown ----------------------------------------------------------------------------------


def _md_change(c: Change) -> str:
    return f"{md.code(c.field)} {md.text(_value(c.old))} → {md.text(_value(c.new))}"


def to_markdown(d: SpecDiff) -> str:
    """A pull-request comment: what changed, the totals, and the checkpoint fit.

    Every string from a spec or the command line goes through cnnspec.render.markdown (`code` for a
    code span, `text` for running text), so none of it is read as Markdown or HTML.
    """
    old, new = md.code(d.old_label), md.code(d.new_label)
    lines = [f"### Architecture diff: {new}", "", f"{old} → {new}", ""]
    if d.same:
        lines += ["**Same architecture.**", ""]
    changes: list[str] = []
    if d.input_change:
        changes.append(f"- **input**: {_shape(d.input_change.old)} → {_shape(d.input_change.new)}")
    for p in d.changed:
        changes.append(
            f"- ✏️ {md.code(p.new.id)} ({md.text(p.new.kind)}): " + "; ".join(_md_change(c) for c in p.changes)
        )
    for n in d.added:
        changes.append(f"- ➕ {md.code(n.id)} ({md.text(n.kind)}): {_shape(n.output_shape)}, {n.params:,} params")
    for n in d.removed:
        changes.append(f"- ➖ {md.code(n.id)} ({md.text(n.kind)}): {_shape(n.output_shape)}, {n.params:,} params")
    if changes:
        lines += [*changes, ""]
    lines += ["| | old | new | Δ |", "|---|--:|--:|--:|"]
    lines += [f"| {a} | {b} | {c} | {e} |" for a, b, c, e in totals(d)]
    lines.append("")
    if d.effects:
        lines += [
            f"<details><summary>{len(d.effects)} layers whose shape or counts changed</summary>",
            "",
            "| layer | output shape | params | MACs |",
            "|---|---|--:|--:|",
        ]
        for p in d.effects:
            shape, params, macs = effect_cells(p)
            lines.append(f"| {md.code(p.new.id, cell=True)} | {shape} | {params} | {macs} |")
        lines += ["", "</details>", ""]
    lines += [f"**Checkpoint:** {checkpoint_summary(d, md.text)}.", ""]
    for status, what in _TENSOR_GROUPS:
        group = d.checkpoint.by_status(status)
        if group:
            lines.append(
                f"- {len(group)} {what}: "
                + ", ".join(md.code(_tensor_line(t)) for t in group[:MAX_LISTED])
                + (" …" if len(group) > MAX_LISTED else "")
            )
    if d.settings:
        lines += ["", "<details><summary>Other settings (not architecture)</summary>", ""]
        lines += [f"- {md.code(c.field)}: {md.text(_value(c.old))} → {md.text(_value(c.new))}" for c in d.settings]
        lines += ["", "</details>"]
    return "\n".join(lines).rstrip() + "\n"


# --- json --------------------------------------------------------------------------------------


def _node(n: Node) -> dict[str, Any]:
    return {"id": n.id, "kind": n.kind, "output_shape": list(n.output_shape), "params": n.params, "macs": n.macs}


def _pair(old: Any, new: Any) -> dict[str, Any]:
    out = {"old": old, "new": new}
    if isinstance(old, int) and isinstance(new, int):
        out["delta"] = new - old
    return out


def to_data(d: SpecDiff) -> dict[str, Any]:
    """The diff as plain data (what `--format json` prints)."""
    o, n = d.old, d.new
    ck = d.checkpoint
    return {
        "old": d.old_label,
        "new": d.new_label,
        "same": d.same,
        "input_shape": _pair(list(o.input_shape), list(n.input_shape)),
        "changed": [
            {
                "old_id": p.old.id,
                "id": p.new.id,
                "kind": p.new.kind,
                "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in p.changes],
            }
            for p in d.changed
        ],
        "added": [_node(x) for x in d.added],
        "removed": [_node(x) for x in d.removed],
        "effects": [
            {
                "old_id": p.old.id,
                "id": p.new.id,
                "kind": p.new.kind,
                "output_shape": _pair(list(p.old.output_shape), list(p.new.output_shape)),
                "params": _pair(p.old.params, p.new.params),
                "macs": _pair(p.old.macs, p.new.macs),
                "receptive_field": _pair(list(p.old.receptive_field), list(p.new.receptive_field)),
            }
            for p in d.effects
        ],
        "totals": {
            "params": _pair(o.total_params, n.total_params),
            "trainable_params": _pair(o.trainable_params, n.trainable_params),
            "macs": _pair(o.macs, n.macs),
            "receptive_field": _pair(list(d.old_rf), list(d.new_rf)),
            "output_shape": _pair(list(o.output_shape), list(n.output_shape)),
        },
        "checkpoint": {
            "fit": ck.fitting,
            "old_tensors": ck.old_total,
            "remap": ck.remap,
            "tensors": [
                {
                    "status": t.status,
                    "old_key": t.old_key,
                    "new_key": t.new_key,
                    "old_shape": list(t.old_shape) if t.old_shape is not None else None,
                    "new_shape": list(t.new_shape) if t.new_shape is not None else None,
                }
                for t in ck.tensors
            ],
            "whole": ck.whole,
            "unknown": ck.unknown,
        },
        "settings": [{"field": c.field, "old": c.old, "new": c.new} for c in d.settings],
    }


def to_json(d: SpecDiff) -> str:
    return json.dumps(to_data(d), indent=2, ensure_ascii=False) + "\n"
