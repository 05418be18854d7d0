"""What a run leaves for people: metrics.jsonl, result.json, curves.png, sample images."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt, ValidationError

from cnnspec.errors import CheckpointError
from cnnspec.rundir.files import make_run_folder, own_path, write_run_file, writing
from cnnspec.rundir.paths import RunPaths


def write_metrics(paths: RunPaths, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl (one object per epoch) atomically: a kill never leaves half a line."""
    write_run_file(paths.root, paths.metrics, "".join(json.dumps(m) + "\n" for m in history))


class EpochRecord(BaseModel):
    """One line of metrics.jsonl as the loop writes it (`TrainingLoop._end_epoch`); keys it does not
    know are kept (a later cnnspec may add some)."""

    model_config = ConfigDict(extra="allow", strict=True)

    epoch: PositiveInt
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    images_per_second: float
    seconds: float
    skipped_steps: NonNegativeInt = 0  # absent from logs written before cnnspec counted skipped steps


MAX_RECORD_BYTES = 64 * 1024  # a record is a few hundred bytes; a longer line is not parsed


@dataclass
class MetricsLog:
    """metrics.jsonl read back for a resume: the epoch records up to the checkpoint's epoch, in order."""

    records: list[dict[str, Any]]
    damaged: list[str]  # "line N: why" for each line that is not an epoch record (or repeats an epoch)
    missing: list[int]  # epochs up to the checkpoint's with no record

    def note(self, path: Path) -> str | None:
        """What a resume says about the log (None: it is whole)."""
        if not self.damaged and not self.missing:
            return None
        text = f"{path}: "
        if self.damaged:
            n = len(self.damaged)
            what = "lines that are not epoch records" if n > 1 else "line that is not an epoch record"
            text += f"left out {n} {what} ({'; '.join(self.damaged[:3])}{'; …' if n > 3 else ''}); "
        if self.missing:
            epochs = ", ".join(map(str, self.missing[:10])) + (", …" if len(self.missing) > 10 else "")
            text += f"no record of epoch{'s' if len(self.missing) > 1 else ''} {epochs}; "
        rewritten = ", with the log rewritten from the records it has" if self.damaged else ""
        return text + f"the checkpoint is intact: resuming from it{rewritten}"


def read_metrics(paths: RunPaths, epochs: int) -> MetricsLog:
    """The records of metrics.jsonl for epochs 1..`epochs` (those the checkpoint completed), each line
    validated as an `EpochRecord`. A line written after the checkpoint (a kill between the two
    writes) is dropped silently; a line that is not a record, or repeats an epoch, is listed in
    `damaged`. CheckpointError when the file exists but cannot be read."""
    if not paths.metrics.is_file():
        return MetricsLog([], [], list(range(1, epochs + 1)))
    try:
        data = paths.metrics.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {paths.metrics}: {exc.strerror or exc}") from None
    records: list[dict[str, Any]] = []
    damaged: list[str] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_BYTES:
            damaged.append(f"line {number}: {len(line):,} bytes, longer than any epoch record")
            continue
        try:
            record = EpochRecord.model_validate_json(line).model_dump()
        except ValidationError as exc:
            damaged.append(f"line {number}: {_first_problem(exc)}")
            continue
        epoch = record["epoch"]
        if epoch > epochs:
            continue
        if records and epoch <= records[-1]["epoch"]:
            previous = records[-1]["epoch"]
            damaged.append(
                f"line {number}: "
                + (f"repeats epoch {epoch}" if epoch == previous else f"epoch {epoch} after epoch {previous}")
            )
            continue
        records.append(record)
    recorded = {r["epoch"] for r in records}
    return MetricsLog(records, damaged, [e for e in range(1, epochs + 1) if e not in recorded])


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"][0].lower() + error["msg"][1:]
    if error["type"] == "model_type":
        return "not a JSON object"
    return f"{where}: {message}" if where else message


def write_json(paths: RunPaths, path: Path, data: dict[str, Any]) -> None:
    """Write one of the run's JSON files (result.json, evaluation.json) atomically, as its own file."""
    write_run_file(paths.root, path, json.dumps(data, indent=2) + "\n")


def plot_curves(history: list[dict[str, Any]], paths: RunPaths) -> None:
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
    save_figure(fig, paths, paths.curves)


def save_figure(fig: Any, paths: RunPaths, path: Path) -> None:
    """Write a matplotlib Figure as the run's PNG file `path`, atomically.

    Figures are made with `matplotlib.figure.Figure`, never pyplot: pyplot would need a backend
    switch (`matplotlib.use`), which changes the caller's (a notebook's) backend for good; a bare
    Figure renders to PNG with Agg whatever the backend, and needs no closing.
    """
    fig.tight_layout()
    write_run_file(paths.root, path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


# A sample's name keeps this much of its class name: a class folder's name may take all of a file
# name's 255 bytes, and CLASS_idxINDEX.png must fit too (only letters, digits, '_' and '-' stay: 1 byte each).
SAMPLE_CLASS_CHARS = 100


def sample_name(class_name: str, index: int) -> str:
    """The file name of test image `index` of class `class_name` in RUN/samples/: CLASS_idxINDEX.png."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", class_name).strip("-")[:SAMPLE_CLASS_CHARS].strip("-") or "class"
    return f"{safe}_idx{index}.png"


def write_samples(paths: RunPaths, images: list[tuple[Any, int, int]], class_names: list[str]) -> list[Path]:
    """Save test images as PNGs in RUN/samples/, named by `sample_name` (for `cnnspec predict RUN/samples`).

    Only grey (1-channel) and RGB (3-channel) images are written: those are what a PNG holds and
    what `predict` decodes; for other channel counts the folder is left empty.
    """
    from PIL import Image

    make_run_folder(paths.root, paths.samples)
    for old in paths.written_samples():
        with writing(old):
            own_path(paths.root, old)
            old.unlink()
    written: list[Path] = []
    if images and images[0][0].shape[0] not in (1, 3):
        return written
    for image, label, index in images:
        array = image.permute(1, 2, 0).numpy()  # (H, W, C) uint8
        pil = Image.fromarray(array[:, :, 0], mode="L") if array.shape[2] == 1 else Image.fromarray(array, mode="RGB")
        path = paths.samples / sample_name(class_names[label], index)
        write_run_file(paths.root, path, _png_writer(pil))
        written.append(path)
    return written


def _png_writer(image: Any) -> Any:
    return lambda tmp: image.save(tmp, format="PNG")
