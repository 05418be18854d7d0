"""`cnnspec diff --format html`: one self-contained page, the two graphs side by side with what changed.

OLD on the left, NEW on the right, every layer drawn (cnnspec.render.graph_boxes): on OLD the removed
layers are red; on NEW the added ones green; a changed layer is yellow on both sides with its
parameter changes in the box; a layer whose output shape or counts changed only because of a change
upstream has a dashed orange outline and says what it was. Above them: the totals (params, MACs,
receptive field, output) with their deltas, the list of changes (click one to find its box), the
layers whose shape or counts changed, and the checkpoint fit, as `--format markdown` says them.
"""

from __future__ import annotations

from html import escape

from cnnspec.layers.base import fmt_shape
from cnnspec.render.diff import checkpoint_summary, effect_cells, totals
from cnnspec.render.graph_boxes import draw
from cnnspec.render.graph_svg import svg
from cnnspec.render.html_page import LEGEND_EDGES, html_text, page
from cnnspec.review.diff import Change, SpecDiff
from cnnspec.review.graphview import diff_marks, value_text, view

TOTAL_KEYS = ("params", "trainable", "macs", "receptive_field", "output")


def _trend(delta: str) -> str:
    if delta.startswith("+"):
        return "up"
    if delta.startswith("-"):
        return "down"
    return "same"


def _change(c: Change) -> str:
    return f"<code>{escape(c.field)}</code> {escape(value_text(c.old))} → {escape(value_text(c.new))}"


def _totals_table(d: SpecDiff) -> str:
    rows = ['<table class="totals"><tr><th></th><th>old</th><th>new</th><th>Δ</th></tr>']
    for key, (name, old, new, delta) in zip(TOTAL_KEYS, totals(d), strict=True):
        rows.append(
            f'<tr data-total="{key}"><td>{escape(name)}</td><td>{escape(old)}</td><td>{escape(new)}</td>'
            f'<td class="delta {_trend(delta)}">{escape(delta)}</td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)


def _changes_list(d: SpecDiff) -> str:
    items = []
    if d.input_change is not None:
        items.append(
            f'<li class="input">input: {escape(fmt_shape(tuple(d.input_change.old)))} → '
            f"{escape(fmt_shape(tuple(d.input_change.new)))}</li>"
        )
    for p in d.changed:
        items.append(
            f'<li class="changed" data-goto="{escape(p.new.id)}" data-side=".side.new"><code>{escape(p.new.id)}</code> '
            f"({escape(p.new.kind)}): " + "; ".join(_change(c) for c in p.changes) + "</li>"
        )
    for n in d.added:
        items.append(
            f'<li class="added" data-goto="{escape(n.id)}" data-side=".side.new"><code>{escape(n.id)}</code> '
            f"({escape(n.kind)}): {escape(fmt_shape(n.output_shape))}, {n.params:,} params</li>"
        )
    for n in d.removed:
        items.append(
            f'<li class="removed" data-goto="{escape(n.id)}" data-side=".side.old"><code>{escape(n.id)}</code> '
            f"({escape(n.kind)}): {escape(fmt_shape(n.output_shape))}, {n.params:,} params</li>"
        )
    return f'<ul class="changes">{"".join(items)}</ul>' if items else ""


def _effects(d: SpecDiff) -> str:
    if not d.effects:
        return ""
    rows = ["<tr><th>layer</th><th>output shape</th><th>params</th><th>MACs</th></tr>"]
    for p in d.effects:
        n = p.new
        shape, params, macs = effect_cells(p)
        rows.append(
            f'<tr data-goto="{escape(n.id)}" data-side=".side.new"><td><code>{escape(n.id)}</code></td>'
            f"<td>{escape(shape)}</td><td>{escape(params)}</td><td>{escape(macs)}</td></tr>"
        )
    return (
        f'<details class="effects" open><summary>{len(d.effects)} layers whose shape or counts changed</summary>'
        f'<table class="totals">{"".join(rows)}</table></details>'
    )


def to_html(d: SpecDiff) -> str:
    """The whole page (no network: every style and script inline)."""
    old_marks, new_marks = diff_marks(d)
    old_svg = svg(draw(view(d.old), old_marks), "old", False)
    new_svg = svg(draw(view(d.new), new_marks), "new", False)
    names = d.new.spec.name if d.old.spec.name == d.new.spec.name else f"{d.old.spec.name} → {d.new.spec.name}"
    if d.same:
        verdict = "Same architecture."
    else:
        verdict = f"{len(d.changed)} changed · {len(d.added)} added · {len(d.removed)} removed"
    header = (
        f"<h1>Architecture diff: {html_text(d.new_label)}</h1>"
        f"<p><code>{html_text(d.old_label)}</code> → <code>{html_text(d.new_label)}</code> ({html_text(names)})</p>"
        f'<p class="verdict">{escape(verdict)}</p>'
    )
    legend = (
        '<p class="legend"><span class="added">added</span><span class="removed">removed</span>'
        '<span class="changed">changed</span><span class="effect">shape or counts changed downstream</span>'
        f"{LEGEND_EDGES}</p>"
    )
    body = (
        f'<section class="summary">{_totals_table(d)}{_changes_list(d)}{_effects(d)}'
        f'<p class="checkpoint"><b>Checkpoint:</b> {escape(checkpoint_summary(d))}.</p></section>'
        f"{legend}"
        '<div class="sides">'
        f'<section class="side old"><h2>OLD: {html_text(d.old_label)}</h2><div class="pane">{old_svg}</div></section>'
        f'<section class="side new"><h2>NEW: {html_text(d.new_label)}</h2><div class="pane">{new_svg}</div></section>'
        "</div>"
    )
    return page(f"Architecture diff: {d.new_label}", header, body)
