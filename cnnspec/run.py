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
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, PositiveInt, ValidationError, model_validator

from cnnspec.errors import CheckpointError, Diagnostic, Location
from cnnspec.spec.base import StrictModel

if TYPE_CHECKING:
    from cnnspec.builder.graph_module import SpecModule
    from cnnspec.checker.graph import Graph
    from cnnspec.spec.model import Spec


# Normalisation values as run.json may hold them: finite, and a std above 0 (evaluate, export and
# predict divide by it, so 0 or NaN would turn every prediction into NaN).
_Mean = Annotated[float, Field(allow_inf_nan=False)]
_Std = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class RunInfo(StrictModel):
    """What a trained model needs beside its weights (stored as RUN/run.json).

    Every reader (evaluate, export, bench, --resume, the run-folder test of a fresh train) goes
    through these rules, so a hand-edited record is refused naming its field, never trusted.
    """

    spec_name: str
    spec_hash: str = Field(description="sha256 of the whole resolved spec.")
    architecture_hash: str = Field(description="sha256 of model: only; resuming needs it unchanged.")
    cnnspec_version: str
    input_shape: list[PositiveInt] = Field(min_length=3, max_length=3, description="[C, H, W] of one image.")
    class_names: list[str] = Field(min_length=1)
    mean: list[_Mean] | None = Field(None, description="Per channel, on the 0–1 scale; None: no normalisation.")
    std: list[_Std] | None = Field(None, description="Per channel, above 0; None exactly when mean is None.")
    dataset: str | None = None

    @model_validator(mode="after")
    def _one_value_per_channel(self) -> RunInfo:
        if (self.mean is None) != (self.std is None):
            given, missing = ("mean", "std") if self.std is None else ("std", "mean")
            raise ValueError(f"{given} is given but {missing} is not: normalisation needs both, or neither")
        channels = self.input_shape[0]
        for key, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != channels:
                raise ValueError(
                    f"{key} has {len(values)} value{'s' if len(values) != 1 else ''} but input_shape has "
                    f"{channels} channel{'s' if channels != 1 else ''}: one value per channel"
                )
        return self


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

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (always False where runs are not locked)."""
        return self._fd is not None

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


def _damaged_info(path: Path, exc: ValidationError) -> CheckpointError:
    """A run.json that breaks RunInfo's rules: one located line per problem, naming the field."""
    where = Location(str(path))
    diagnostics = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        if error["type"] == "json_invalid":
            message = f"not valid JSON ({message.removeprefix('Invalid JSON: ')})"
        elif field:
            shown = json.dumps(error["input"]) if _json_able(error["input"]) else repr(error["input"])
            message = f"{field}: {message[:1].lower()}{message[1:]}, got {shown[:80]}"
        else:
            message = f"{message[:1].lower()}{message[1:]}"  # the whole record (a list, a mean without std)
        diagnostics.append(Diagnostic(message, where))
    return CheckpointError(
        diagnostics,
        hint="run.json is the record `cnnspec train` wrote; put back the original, or train the run again",
    )


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
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
        text = paths.info.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {paths.info}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return RunInfo.model_validate_json(text)
    except ValidationError as exc:
        raise _damaged_info(paths.info, exc) from None


def legacy_architecture_hash(spec: Spec) -> str:
    """The architecture hash as cnnspec wrote it before values at their defaults were left out
    (every value of `model:`, `model.weights` included): run.json files of older runs hold it."""
    model = spec.model.model_dump(mode="json")
    return hashlib.sha256(_canonical({"model": model, "vars": spec.vars} if spec.vars else model)).hexdigest()


def ensure_architecture(info: RunInfo, spec: Spec, root: Path, *, resuming: bool) -> None:
    """CheckpointError unless `spec`'s architecture is the one the run in `root` trained (run.json's
    architecture_hash): `--resume` continues only the same network, and evaluate, export and bench
    load the weights only into the network they were trained as (the same shapes with another
    activation would load and answer wrongly)."""
    if info.architecture_hash in (architecture_hash(spec), legacy_architecture_hash(spec)):
        return
    if resuming:
        raise CheckpointError(
            f"cannot resume {root}: the spec's architecture (model:) differs from the one this run trained",
            hint="resume with the run's own spec.yaml, or train the changed model as a new run with --out NEW_DIR",
        )
    paths = RunPaths(root)
    raise CheckpointError(
        f"{paths.spec} does not describe the network this run's weights were trained as: its model: section "
        f"differs from the one recorded in {paths.info.name} (architecture_hash), so it was changed after training",
        hint=f"put back the spec.yaml the run was trained with; to train the changed model, run "
        f"`cnnspec train {paths.spec} --out NEW_DIR`",
    )


def ensure_record_fits(info: RunInfo, graph: Graph, paths: RunPaths) -> None:
    """CheckpointError when run.json's input shape or class names do not fit the spec's network."""
    if list(info.input_shape) != list(graph.input_shape):
        raise CheckpointError(
            f"{paths.info}: input_shape {info.input_shape} does not match the spec's {list(graph.input_shape)}"
        )
    out = graph.output_shape
    if len(out) == 1 and len(info.class_names) != out[0]:
        raise CheckpointError(f"{paths.info} names {len(info.class_names)} classes but the model has {out[0]} outputs")


@dataclass(frozen=True)
class OpenRun:
    """A run directory read back and checked: its record, its spec and the spec's graph."""

    paths: RunPaths
    info: RunInfo
    spec: Spec
    graph: Graph

    def weights_file(self, which: str = "best") -> tuple[str, Path]:
        """Which weights `which` gives and their file: best.safetensors, or last.safetensors when the run
        has no best one yet (stopped inside its first epoch)."""
        if which == "best" and not self.paths.weights("best").is_file() and self.paths.weights("last").is_file():
            return "last", self.paths.weights("last")
        return which, self.paths.weights(which)


def open_run(run: str | Path) -> OpenRun:
    """Read a run directory's run.json and spec.yaml and check that they still describe the weights."""
    from cnnspec.checker.checker import check
    from cnnspec.spec.load import load

    paths = RunPaths(Path(run))
    info = read_info(run)
    if not paths.spec.is_file():
        raise CheckpointError(f"{run} is not a cnnspec run directory (no spec.yaml)")
    spec = load(paths.spec)
    ensure_architecture(info, spec, paths.root, resuming=False)
    graph = check(spec)
    ensure_record_fits(info, graph, paths)
    return OpenRun(paths, info, spec, graph)


@dataclass
class TrainedModel:
    spec: Spec
    graph: Graph
    model: SpecModule  # eval mode, on the CPU
    info: RunInfo
    paths: RunPaths
    weights: str = "best"  # the weights loaded: "best", or "last" (asked for, or best did not exist)


def load_trained(run: str | Path | OpenRun, which: str = "best") -> TrainedModel:
    """The trained model of a run directory, weights loaded through safetensors only.

    `which` is "best" or "last"; a run without best.safetensors (stopped inside its first epoch)
    gives its last weights for "best", and `TrainedModel.weights` says which were loaded.
    """
    from cnnspec.builder.graph_module import build
    from cnnspec.training.checkpoint import load_weights

    opened = run if isinstance(run, OpenRun) else open_run(run)
    model = build(opened.graph, pretrained=False)  # the run's own weights are loaded below
    used, weights = opened.weights_file(which)
    load_weights(model, weights)
    model.eval()
    return TrainedModel(opened.spec, opened.graph, model, opened.info, opened.paths, used)
