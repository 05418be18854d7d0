"""The summary table's renderers: text, JSON, Markdown and the plot, over the rows of
cnnspec.checker.summary (computed from the checked graph)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from cnnspec.checker.summary import Row, Summary
from cnnspec.layers import REGISTRY
from cnnspec.layers.base import fmt_shape
from cnnspec.render import markdown as md
from cnnspec.terminal import cell, printable


def human(n: float) -> str:
    """1234567 → '1.23 M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:g}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"  # torchinfo's unit: 10^6 bytes


def _memory_line(summary: Summary) -> str:
    """torchinfo's four sizes (Summary.memory), fp32 at the summary's batch size."""
    m = summary.memory
    approx = "≈ " if m.estimated else ""  # a backbone not known layer by layer: its own output alone
    return (
        f"Input size: {_mb(m.input_bytes)}   Forward/backward pass size: {approx}{_mb(m.forward_backward_bytes)}"
        f"   Params size: {_mb(m.params_bytes)}   Estimated total size: {approx}{_mb(m.total_bytes)}"
        f" (fp32, batch {m.batch_size}, counted as torchinfo counts)"
    )


def _vars_line(summary: Summary) -> list[str]:
    return ["Vars: " + ", ".join(f"{k}={v:g}" for k, v in summary.vars.items())] if summary.vars else []


def _approx(summary: Summary, layer_id: str | None = None) -> str:
    """ "≈ " before a MACs figure that is an estimate: one layer's, or the total when it includes one."""
    estimated = layer_id in summary.estimated_macs if layer_id else bool(summary.estimated_macs)
    return "≈ " if estimated else ""


def _rf(v: int | list[int] | float | list[float]) -> str:
    return "×".join(str(x) for x in v) if isinstance(v, list) else str(v)


def to_json(summary: Summary) -> str:
    return json.dumps(asdict(summary), indent=2) + "\n"


def to_markdown(summary: Summary) -> str:
    lines = [
        f"**{md.text(summary.name)}** — input {fmt_shape(tuple(summary.input_shape))}"
        f" → output {fmt_shape(tuple(summary.output_shape))}",
        "",
        "| id | kind | output shape | params | MACs | receptive field | stride |",
        "|---|---|---|--:|--:|--:|--:|",
    ]
    for r in summary.layers:
        shape, rf, stride = fmt_shape(tuple(r.output_shape)), _rf(r.receptive_field), _rf(r.stride)
        macs = _approx(summary, r.id) + f"{r.macs:,}"
        lines.append(f"| `{r.id}` | {r.kind} | {shape} | {r.params:,} | {macs} | {rf} | {stride} |")
    lines += [
        "",
        f"Total params: {summary.total_params:,} · trainable: {summary.trainable_params:,}"
        f" · MACs: {_approx(summary)}{summary.macs:,} ({human(summary.macs)})",
        "",
        _memory_line(summary).replace("   ", " · "),
        *(["", *_vars_line(summary)] if summary.vars else []),
        *(["", *(f"Note: {md.text(note)}" for note in summary.notes)] if summary.notes else []),
    ]
    return "\n".join(lines) + "\n"


def to_lines(summary: Summary) -> str:
    """The summary for line diffs (`git diff` textconv): one line per layer in execution order, then the
    totals, each line `key: value` without alignment padding, so a change to one layer (a longer id,
    a wider conv) changes that layer's line and the totals it moves, never its neighbours'."""
    lines = [
        f"spec: {printable(summary.name)}",
        f"input: {fmt_shape(tuple(summary.input_shape))}",
    ]
    for r in summary.layers:
        frozen = "" if r.trainable else " frozen"
        lines.append(
            f"layer {r.id}: {r.kind} {fmt_shape(tuple(r.output_shape))} params={r.params}{frozen}"
            f" macs={'~' if r.id in summary.estimated_macs else ''}{r.macs}"
            f" rf={_rf(r.receptive_field)} stride={_rf(r.stride)}"
        )
    lines += [
        f"output: {fmt_shape(tuple(summary.output_shape))}",
        f"total params: {summary.total_params}",
        f"trainable params: {summary.trainable_params}",
        f"macs per image: {'~' if summary.estimated_macs else ''}{summary.macs}",
        *(f"var {k}: {v:g}" for k, v in summary.vars.items()),
        *(f"note: {note}" for note in summary.notes),
    ]
    return "\n".join(lines) + "\n"


def error_lines(message: str) -> str:
    """What `to_lines`' format says for a spec that does not load or check: the error itself, as the
    text to diff (a textconv that exits non-zero makes `git diff` fatal)."""
    return "".join(f"{line}\n" for line in message.splitlines()) or "error\n"


class NaturalWidth:
    """Renders its content at full width when the output is not a terminal.

    Piped output (files, CI logs, `git diff` textconv) would otherwise be squeezed into
    80 columns, wrapping and cutting cells ("layer1.0.…"); the same spec must always give
    the same text.
    """

    def __init__(self, renderable: Any):
        self.renderable = renderable

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement
        from rich.segment import Segment

        if console.is_terminal:
            yield from console.render(self.renderable, options)
            return
        width = max(Measurement.get(console, options.update_width(100_000), self.renderable).maximum, 1)
        if width > console.width:
            console.width = width  # Console.print crops to the console's width after rendering
        for line in console.render_lines(self.renderable, options.update_width(width), pad=False):
            # No trailing spaces (the padded title): they would show up in `git diff`.
            while line and not line[-1].text.strip():
                line.pop()
            if line:
                line[-1] = Segment(line[-1].text.rstrip(), line[-1].style, line[-1].control)
            yield from line
            yield Segment.line()


def to_text(summary: Summary) -> Any:
    """A rich renderable table, like Keras' model.summary() or torchinfo; never cut when piped."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=cell(summary.name), title_justify="left", show_lines=False)
    for col, justify in (
        ("id", "left"),
        ("kind", "left"),
        ("output shape", "left"),
        ("params", "right"),
        ("MACs", "right"),
        ("RF", "right"),
        ("stride", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in summary.layers:
        params = f"{r.params:,}" + ("" if r.trainable else " (frozen)")
        table.add_row(
            r.id,
            r.kind,
            fmt_shape(tuple(r.output_shape)),
            params,
            _approx(summary, r.id) + human(r.macs),
            _rf(r.receptive_field),
            _rf(r.stride),
        )
    totals = Text(
        f"Input: {fmt_shape(tuple(summary.input_shape))}   Output: {fmt_shape(tuple(summary.output_shape))}\n"
        f"Total params: {summary.total_params:,}   Trainable params: {summary.trainable_params:,}   "
        f"Non-trainable params: {summary.total_params - summary.trainable_params:,}\n"
        f"MACs per image: {_approx(summary)}{summary.macs:,} ({human(summary.macs)})\n"
        + _memory_line(summary)
        + "".join("\n" + line for line in _vars_line(summary))
        + "".join(f"\nNote: {note}" for note in summary.notes)
    )
    return NaturalWidth(Group(table, totals))


def stages(summary: Summary) -> list[Row]:
    """The rows the plot shows: layers whose kind slides a window over a feature map (conv and pooling)."""
    return [r for r in summary.layers if len(r.output_shape) == 3 and _slides_window(r.kind)]


def _slides_window(kind: str) -> bool:
    cls = REGISTRY.get(kind)  # None for the parts sugar expands into (a residual's `shortcut`)
    return cls is not None and cls.slides_window


def plot_formats() -> list[str]:
    """The file formats `plot` can write, named by extension: matplotlib's, less pgf when its TeX
    program is missing (matplotlib would fail only after drawing)."""
    import shutil

    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase

    formats = set(FigureCanvasBase.get_supported_filetypes())
    if shutil.which(str(matplotlib.rcParams["pgf.texsystem"])) is None:
        formats.discard("pgf")
    return sorted(formats)


def plot_format(path: str) -> str:
    """The format `plot` writes to `path`, from its extension (PNG when it has none); CnnspecError,
    listing the formats there are, for an extension matplotlib cannot write."""
    from pathlib import PurePath

    from cnnspec.errors import CnnspecError, Diagnostic, Location

    suffix = PurePath(path).suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    formats = plot_formats()
    if suffix not in formats:
        raise CnnspecError(
            Diagnostic(
                f"--plot cannot write .{suffix} files",
                Location(path),
                hint=f"name the file with one of: {', '.join('.' + f for f in formats)} (e.g. plot.png)",
            )
        )
    return suffix


def plot(summary: Summary, path: str) -> None:
    """Receptive field and feature-map size per conv/pool stage, written as a PNG (or the
    format `plot_format` reads from the extension).

    The y axis turns logarithmic (base 2) when the two curves span more than 32×, as in a
    ResNet, where the receptive field grows to hundreds of pixels while maps shrink to 7.
    """
    import matplotlib.ticker
    from matplotlib.figure import Figure  # not pyplot: the caller's matplotlib backend stays as it is

    rows = stages(summary)
    xs = list(range(1, len(rows) + 1))
    rf = [max(r.receptive_field) if isinstance(r.receptive_field, list) else r.receptive_field for r in rows]
    size = [r.output_shape[1] for r in rows]
    fig = Figure(figsize=(max(6.4, len(xs) * 0.38), 4.2))
    ax = fig.subplots()
    ax.plot(xs, rf, marker="o", label="Receptive field")
    ax.plot(xs, size, marker="s", label="Feature map size (H)")
    values = rf + size
    if values and max(values) > 32 * max(1, min(values)):
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 8, 16, … rather than 2³, 2⁴
    for x, y in ((xs[-1], rf[-1]), (xs[-1], size[-1])) if xs else ():
        ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(6, 0), va="center", fontsize=8)
    ax.set_xlabel("Conv/Pool stage")
    ax.set_ylabel("Size (pixels)")
    ax.set_title(f"{summary.name}: receptive field vs. spatial resolution")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x}: {r.id}" for x, r in zip(xs, rows, strict=True)], rotation=60, ha="right", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120, format=plot_format(path))  # exactly `path`, even without an extension
