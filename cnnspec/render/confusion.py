"""The confusion matrix drawn as a matplotlib Figure: RUN/confusion_matrix.png (evaluate) and the loggers' image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def confusion_figure(matrix: Sequence[Sequence[int]] | Any, class_names: list[str], title: str) -> Any:
    """A `matplotlib.figure.Figure` of `matrix` (K×K counts, row = true class, column = predicted):
    rows normalised to 1, the counts written in the cells when there are few classes."""
    import numpy as np
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0]
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(max(4.0, 0.45 * k + 2), 30.0)
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ticks = list(range(k))
    ax.set_xticks(ticks, labels=class_names if k <= 50 else [""] * k, rotation=90 if k > 10 else 0)
    ax.set_yticks(ticks, labels=class_names if k <= 50 else [""] * k)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                count = int(counts[i, j])
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", color="white" if rows[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig
