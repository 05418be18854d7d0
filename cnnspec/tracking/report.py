"""`cnnspec runs` and `cnnspec runs compare` as text, JSON and Markdown (over cnnspec.tracking.runs' objects)."""

from __future__ import annotations

import json
from typing import Any

from cnnspec.terminal import printable
from cnnspec.tracking.runs import Comparison, RunRow

HEADERS = ("run", "status", "name", "arch", "params", "MACs", "epochs", "best val acc", "test acc", "wall", "device")


def cells(row: RunRow) -> list[str]:
    """One row's cells, as the text and Markdown tables show them ("-" where there is no figure)."""
    return [
        row.run,
        row.status,
        row.name or "-",
        row.architecture or "-",
        _count(row.params),
        _count(row.macs),
        "-" if row.epochs is None else str(row.epochs),
        _fraction(row.best_val_accuracy),
        _fraction(row.test_accuracy),
        "-" if row.wall_seconds is None else f"{row.wall_seconds:.1f}s",
        row.device or "-",
    ]


def rows_text(rows: list[RunRow]) -> str:
    """A plain aligned table, then one line per run that is not done saying why."""
    if not rows:
        return "no runs found"
    table = [list(HEADERS), *([printable(c) for c in cells(r)] for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    notes = [f"{printable(r.run)}: {r.status}: {printable(r.problem)}" for r in rows if r.problem]
    return "\n".join(lines + (["", *notes] if notes else []))


def rows_markdown(rows: list[RunRow]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_md(c) for c in cells(r)) + " |" for r in rows]
    notes = [f"- `{_md(r.run)}`: {r.status}: {_md(r.problem or '')}" for r in rows if r.problem]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def rows_json(rows: list[RunRow]) -> str:
    return json.dumps([r.to_json() for r in rows], indent=2)


def comparison_data(c: Comparison) -> dict[str, Any]:
    from cnnspec.render.diff import to_data

    return {
        "runs": [{"label": r.label, **r.row.to_json(), "history": r.history} for r in c.runs],
        "architecture": [to_data(d) for d in c.architecture],
        "settings": [{"key": key, "values": values} for key, values in c.settings],
    }


def comparison_text(c: Comparison) -> str:
    from cnnspec.render.diff import to_plain_text

    parts = [rows_text([_labelled(r.row, r.label) for r in c.runs])]
    for d in c.architecture:
        parts.append(f"architecture: {printable(d.new_label)} against {printable(d.old_label)}")
        parts.append(to_plain_text(d).rstrip())
    parts.append(_settings_text(c))
    return "\n\n".join(parts)


def comparison_markdown(c: Comparison) -> str:
    from cnnspec.render.diff import to_markdown

    parts = [rows_markdown([_labelled(r.row, r.label) for r in c.runs]).rstrip()]
    parts += [to_markdown(d).rstrip() for d in c.architecture]
    if c.settings:
        labels = [r.label for r in c.runs]
        lines = ["### Settings that differ", "", "| setting | " + " | ".join(_md(x) for x in labels) + " |"]
        lines.append("|" + "---|" * (len(labels) + 1))
        lines += [f"| `{k}` | " + " | ".join(_md(_value(v)) for v in vs) + " |" for k, vs in c.settings]
        parts.append("\n".join(lines))
    else:
        parts.append("### Settings that differ\n\nnone")
    return "\n\n".join(parts) + "\n"


def _settings_text(c: Comparison) -> str:
    if not c.settings:
        return "settings: the same (outside model:)"
    labels = [printable(r.label) for r in c.runs]
    table = [["setting", *labels], *([printable(k), *(printable(_value(v)) for v in vs)] for k, vs in c.settings)]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table]
    return "settings that differ (outside model:):\n" + "\n".join(lines)


def _labelled(row: RunRow, label: str) -> RunRow:
    from dataclasses import replace

    return replace(row, run=label)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _md(text: str) -> str:
    return printable(text).replace("|", "\\|")
