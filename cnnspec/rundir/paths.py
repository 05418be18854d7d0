"""Where each file of a run directory is (the layout: cnnspec/rundir/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    def onnx(self) -> Path:
        return self.root / "model.onnx"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME


LOCK_NAME = ".cnnspec.lock"
