"""The curves of several runs overlaid in one PNG (`cnnspec runs compare -o FILE.png`)."""

from __future__ import annotations

from pathlib import Path

from cnnspec.atomic import atomic_write_with
from cnnspec.rundir.files import writing
from cnnspec.tracking.runs import Comparison


def plot_comparison(comparison: Comparison, out: Path) -> None:
    """Loss and accuracy per epoch, one colour per run: training solid, validation dashed.

    A bare matplotlib Figure (no pyplot: the caller's backend stays as it is), written atomically; a
    failed write (a full disk, a folder that is not writable) is a CheckpointError naming `out`.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(comparison.runs))]
    for run, colour in zip(comparison.runs, colours, strict=True):
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            for split, style in (("train", "-"), ("val", "--")):
                points = [(r["epoch"], r[f"{split}_{key}"]) for r in run.history if r.get(f"{split}_{key}") is not None]
                if points:
                    ax.plot(
                        [e for e, _ in points],
                        [v for _, v in points],
                        style,
                        color=colour,
                        marker="o",
                        markersize=3,
                        label=f"{run.label} ({'validation' if split == 'val' else split})",
                    )
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    with writing(out):
        atomic_write_with(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
