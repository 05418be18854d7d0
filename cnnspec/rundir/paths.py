"""Where each file of a run directory is (the layout: cnnspec/rundir/__init__.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The files cnnspec writes at the top of a run directory (a fresh run removes these, and only these,
# with the checkpoints and the sample images below; every command that writes one checks it first:
# cnnspec/rundir/files.py).
RUN_FILES = (
    "spec.yaml",
    "run.json",
    "metrics.jsonl",
    "result.json",
    "curves.png",
    "model.onnx",
    "model.onnx.data",
    "evaluation.json",
    "confusion_matrix.png",
)
CHECKPOINT_FILES = ("last.safetensors", "best.safetensors", "last.state.pt")
SAMPLE_NAME = re.compile(r".+_idx[0-9]+\.png")  # the sample images' names: CLASS_idxINDEX.png


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def info(self) -> Path:
        return self.root / "run.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def weights(self, which: str = "best") -> Path:
        return self.checkpoints / f"{which}.safetensors"

    @property
    def state(self) -> Path:
        return self.checkpoints / "last.state.pt"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def confusion(self) -> Path:
        return self.root / "confusion_matrix.png"

    @property
    def onnx(self) -> Path:
        return self.root / "model.onnx"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def written_samples(self) -> list[Path]:
        """The sample images cnnspec wrote in RUN/samples/ (by name; other files there are the user's)."""
        if not self.samples.is_dir() or self.samples.is_symlink():
            return []
        return sorted(p for p in self.samples.glob("*_idx*.png") if SAMPLE_NAME.fullmatch(p.name))

    def owned(self) -> list[Path]:
        """Every file cnnspec writes in the run (those that exist among the sample images) and its
        two folders: what a fresh train replaces."""
        return [
            *(self.root / name for name in RUN_FILES),
            self.lock,
            *(self.checkpoints / name for name in CHECKPOINT_FILES),
            self.samples,
            *self.written_samples(),
        ]


LOCK_NAME = ".cnnspec.lock"
