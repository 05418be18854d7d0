"""The run directory: the contract between train, evaluate, export and predict.

RUN/
  spec.yaml          the resolved spec that was trained (overrides applied)
  run.json           RunInfo: hashes, class names, input shape, normalisation, device
  metrics.jsonl      one object per epoch
  checkpoints/       last.safetensors, best.safetensors (model weights),
                     last.state.pt (training state, torch.load(weights_only=True))
  result.json        test_accuracy, test_loss, best_epoch, epochs, wall_seconds, device, amp
  curves.png
  model.onnx         after export
  .cnnspec.lock      held (flock) by the process that writes the run: one writer at a time
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from cnnspec.errors import CheckpointError
from cnnspec.spec.base import StrictModel

if TYPE_CHECKING:
    from cnnspec.builder.graph_module import SpecModule
    from cnnspec.checker.graph import Graph
    from cnnspec.spec.model import Spec


class RunInfo(StrictModel):
    """What a trained model needs beside its weights (stored as RUN/run.json)."""

    spec_name: str
    spec_hash: str = Field(description="sha256 of the whole resolved spec.")
    architecture_hash: str = Field(description="sha256 of model: only; resuming needs it unchanged.")
    cnnspec_version: str
    input_shape: list[int]
    class_names: list[str]
    mean: list[float] | None = None
    std: list[float] | None = None
    dataset: str | None = None


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


class RunLock:
    """One writer per run directory: an exclusive `flock` on RUN/.cnnspec.lock while a process writes it.

    The OS releases the lock when the process ends, however it ends (a kill included), so a
    stale lock file never blocks anyone: only a live holder does. The file keeps the holder's
    pid, host, command and start time, for the message the next writer gets. On systems
    without `fcntl` (Windows) runs are not locked.
    """

    def __init__(self, root: Path, command: str):
        self.path = root / LOCK_NAME
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            writable = True
        except OSError:
            if not self.path.is_file():
                raise
            # A read-only folder (or lock file): lock it all the same, so that the write that follows
            # fails naming its own file, and leave the holder record as it is.
            fd, writable = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise CheckpointError(
                f"{self.path.parent} is being written by another cnnspec process ({holder})",
                hint="wait for it to finish, or write this run to another folder (--out)",
            ) from None
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started": started}
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {record['pid']} on {record['host']}, `{record['command']}`, since {record['started']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "its lock file names no holder"


@contextlib.contextmanager
def locked(root: str | Path, command: str | None = None) -> Iterator[RunLock]:
    """Hold the run directory's lock for the block; CheckpointError when another process holds it."""
    lock = RunLock(Path(root), command or " ".join(["cnnspec", *sys.argv[1:2]])).acquire()
    try:
        yield lock
    finally:
        lock.release()


def is_run(root: Path) -> bool:
    """Whether `root` holds a cnnspec run: a run.json that parses as cnnspec's own record."""
    try:
        RunInfo.model_validate_json(RunPaths(root).info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def spec_hash(spec: Spec) -> str:
    return hashlib.sha256(_canonical(spec.model_dump(mode="json"))).hexdigest()


def architecture_hash(spec: Spec) -> str:
    """sha256 of `model:` with its expressions' values, plus the vars when there are any: the layers
    of a block read vars at each use, so the same `model:` text is another network at another width.

    Values equal to their defaults are left out, so a later cnnspec that adds an optional field
    (with a default that keeps today's behaviour) still resumes today's runs; `model.weights` is
    left out because it names where the first weights came from, not what the network is.
    """
    model = spec.model.model_dump(mode="json", exclude_defaults=True, exclude={"weights"})
    return hashlib.sha256(_canonical({"model": model, "vars": spec.vars} if spec.vars else model)).hexdigest()


def read_info(run: str | Path) -> RunInfo:
    paths = RunPaths(Path(run))
    if not paths.info.is_file():
        raise CheckpointError(
            f"{run} is not a cnnspec run directory (no run.json)", hint="pass the folder `cnnspec train --out` wrote"
        )
    try:
        return RunInfo.model_validate_json(paths.info.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{paths.info} is damaged: {exc}") from None


@dataclass
class TrainedModel:
    spec: Spec
    graph: Graph
    model: SpecModule  # eval mode, on the CPU
    info: RunInfo
    paths: RunPaths


def load_trained(run: str | Path, which: str = "best") -> TrainedModel:
    """The trained model of a run directory, weights loaded through safetensors only."""
    from cnnspec.builder.graph_module import build
    from cnnspec.checker.checker import check
    from cnnspec.spec.load import load
    from cnnspec.training.checkpoint import load_weights

    paths = RunPaths(Path(run))
    info = read_info(run)
    spec = load(paths.spec)
    graph = check(spec)
    model = build(graph, pretrained=False)  # the run's own weights are loaded below
    weights = paths.weights(which)
    if not weights.is_file():
        weights = paths.weights("last")
    load_weights(model, weights)
    model.eval()
    return TrainedModel(spec, graph, model, info, paths)
