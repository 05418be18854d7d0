"""What a run leaves for people: metrics.jsonl, result.json, curves.png, sample images."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cnnspec.atomic import atomic_write_text, atomic_write_with
from cnnspec.rundir.files import writing
from cnnspec.rundir.paths import RunPaths


def write_metrics(paths: RunPaths, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl (one object per epoch) atomically: a kill never leaves half a line."""
    with writing(paths.metrics):
        atomic_write_text(paths.metrics, "".join(json.dumps(m) + "\n" for m in history))


def read_metrics(paths: RunPaths) -> list[dict[str, Any]]:
    if not paths.metrics.is_file():
        return []
    lines = paths.metrics.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def write_json(path: Path, data: dict[str, Any]) -> None:
    with writing(path):
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train and validation, side by side."""
    from matplotlib.figure import Figure

    epochs = [m["epoch"] for m in history]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, [m[f"train_{key}"] for m in history], marker="o", label="train")
        val = [(m["epoch"], m[f"val_{key}"]) for m in history if m.get(f"val_{key}") is not None]
        if val:
            ax.plot([e for e, _ in val], [v for _, v in val], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib Figure as a PNG, atomically.

    Figures are made with `matplotlib.figure.Figure`, never pyplot: pyplot would need a backend
    switch (`matplotlib.use`), which changes the caller's (a notebook's) backend for good; a bare
    Figure renders to PNG with Agg whatever the backend, and needs no closing.
    """
    fig.tight_layout()
    with writing(path):
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "class"


SAMPLE_NAME = re.compile(r".+_idx[0-9]+\.png")  # what write_samples names its files: CLASS_idxINDEX.png


def written_samples(folder: Path) -> list[Path]:
    """The sample images cnnspec wrote in `folder` (other files there are the user's)."""
    return sorted(p for p in folder.glob("*_idx*.png") if SAMPLE_NAME.fullmatch(p.name) and p.is_file())


def write_samples(folder: Path, images: list[tuple[Any, int, int]], class_names: list[str]) -> list[Path]:
    """Save test images as PNGs named CLASS_idxINDEX.png (for `cnnspec predict RUN/samples`).

    Only grey (1-channel) and RGB (3-channel) images are written: those are what a PNG holds and
    what `predict` decodes; for other channel counts the folder is left empty.
    """
    from PIL import Image

    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for old in written_samples(folder):
            old.unlink()
    written: list[Path] = []
    if images and images[0][0].shape[0] not in (1, 3):
        return written
    for image, label, index in images:
        array = image.permute(1, 2, 0).numpy()  # (H, W, C) uint8
        pil = Image.fromarray(array[:, :, 0], mode="L") if array.shape[2] == 1 else Image.fromarray(array, mode="RGB")
        path = folder / f"{_safe(class_names[label])}_idx{index}.png"
        with writing(path):
            atomic_write_with(path, _png_writer(pil))
        written.append(path)
    return written


def _png_writer(image: Any) -> Any:
    return lambda tmp: image.save(tmp, format="PNG")
