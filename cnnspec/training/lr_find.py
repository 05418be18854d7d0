"""The learning-rate range test (Smith 2015; fastai's `lr_find`, Lightning's `Tuner.lr_find`).

The spec trains from its first step with the learning rate ramped exponentially from `min_lr`
to `max_lr` over `steps` optimizer steps, the loss recorded at each; the test stops early once
the smoothed loss is 4× its minimum (diverged). The suggested lr is the steepest descent of the
smoothed loss against log(lr), as Lightning suggests it. Training runs through `cnnspec.train`
with a callback (it sets each step's lr and stops the run by raising, the hooks' supported way)
in a temporary run directory that lr-find makes and removes: it never writes into a run of
anyone else. What it leaves is OUT/lr_find.png and OUT/lr_find.json, each written whole
(atomically) or not at all; the bounds and OUT are checked before the test runs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnspec.atomic import atomic_write_text, atomic_write_with, describe_mode, write_target
from cnnspec.errors import CnnspecError
from cnnspec.rundir.files import writing
from cnnspec.terminal import printable
from cnnspec.training.callbacks import Callback, Step, TrainStart

if TYPE_CHECKING:
    import torch
    from torch import nn

    from cnnspec.spec.model import Spec

# The learning rates a ramp may span: beyond them float32 weights overflow or never move, and a
# bound such as 1e-300 or inf would only end in a diverged test that blames optimizer.lr.
LOWEST_LR, HIGHEST_LR = 1e-12, 1e6
PLOT, RECORD = "lr_find.png", "lr_find.json"
SMOOTHING = 0.98  # exponential moving average of the loss, debiased (fastai's beta)
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum


class _Done(Exception):
    """Raised by the ramp's hook to end the training run once the test has its points."""


@dataclass(frozen=True)
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggestion: float
    plot: Path
    record: Path


def ramp(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """The exponential ramp: lr_i = min_lr · (max_lr/min_lr)^(i/(steps−1))."""
    return [min_lr * (max_lr / min_lr) ** (i / (steps - 1)) for i in range(steps)]


class _Ramp(Callback):
    def __init__(self, lrs: list[float]) -> None:
        self.lrs = lrs
        self.optimizer: Any = None
        self.raw: list[float] = []
        self.smoothed: list[float] = []
        self._avg = 0.0

    def on_train_start(self, start: TrainStart) -> None:
        self.optimizer = start.optimizer

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for group in self.optimizer.param_groups:  # after the schedule set its own: the ramp's wins
            group["lr"] = self.lrs[step.global_step - 1]
        return images, targets

    def on_step_end(self, step: Step, model: nn.Module, loss: torch.Tensor) -> None:
        value = float(loss)
        self.raw.append(value)
        self._avg = SMOOTHING * self._avg + (1 - SMOOTHING) * value
        smooth = self._avg / (1 - SMOOTHING ** len(self.raw))
        self.smoothed.append(smooth)
        if len(self.raw) >= len(self.lrs) or not math.isfinite(smooth) or smooth > DIVERGED * min(self.smoothed):
            raise _Done


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest per unit of log(lr) (the ends skipped, as Lightning does)."""
    skip_start, skip_end = min(10, len(lrs) // 10), min(5, len(lrs) // 20)
    points = list(zip(lrs, losses, strict=True))[skip_start : len(lrs) - skip_end or None]
    if len(points) < 3:
        raise CnnspecError(
            "the lr range test stopped after too few steps to suggest a learning rate",
            hint="lower --min-lr or raise --steps",
        )
    slopes = [
        (points[i + 1][1] - points[i - 1][1]) / (math.log(points[i + 1][0]) - math.log(points[i - 1][0]))
        for i in range(1, len(points) - 1)
    ]
    return points[1 + min(range(len(slopes)), key=slopes.__getitem__)][0]


def lr_find(
    spec: Spec | str | Path,
    out: str | Path | None = None,
    *,
    steps: int = 200,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
) -> LrFindResult:
    """Run the range test on a spec; writes OUT/lr_find.png and OUT/lr_find.json (default lr_find/NAME)."""
    from matplotlib.figure import Figure

    from cnnspec.spec.load import load
    from cnnspec.spec.overrides import override_spec
    from cnnspec.training.api import train

    check_bounds(min_lr, max_lr)
    if steps < 20:
        raise CnnspecError(f"--steps {steps}: the range test needs 20 or more steps")
    loaded = load(spec) if not hasattr(spec, "model") else spec
    assert not isinstance(loaded, (str, Path))
    folder = Path(out) if out is not None else Path("lr_find") / loaded.name
    check_out(folder)  # before the test: a minute of training must not end in "cannot write"
    # Enough epochs for the ramp whatever the steps per epoch; the hook ends the run when done.
    ramped = override_spec(loaded, [f"train.epochs={steps}", "train.early_stopping=null"])
    lrs = ramp(min_lr, max_lr, steps)
    cb = _Ramp(lrs)
    scratch = Path(tempfile.mkdtemp(prefix="cnnspec-lr-find-"))
    try:
        train(ramped, scratch / "run", progress=False, callbacks=[cb])
    except _Done:
        pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # made by us above, nobody else's
    tried = lrs[: len(cb.smoothed)]
    suggestion = suggest_lr(tried, cb.smoothed)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(tried, cb.smoothed)
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested lr {suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(f"lr range test: {loaded.name}")
    ax.legend()
    plot, record = folder / PLOT, folder / RECORD
    data = {"lrs": tried, "losses": cb.smoothed, "raw_losses": cb.raw, "suggestion": suggestion}
    # Each file whole or not at all (a full disk leaves no 0-byte plot); a failure names the file.
    with writing(plot):
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_with(plot, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    with writing(record):
        atomic_write_text(record, json.dumps(data, indent=1))
    return LrFindResult(tried, cb.smoothed, suggestion, plot, record)


def check_bounds(min_lr: float, max_lr: float) -> None:
    """CnnspecError unless LOWEST_LR ≤ min_lr < max_lr ≤ HIGHEST_LR (so both are finite and positive)."""
    for option, value in (("--min-lr", min_lr), ("--max-lr", max_lr)):
        if not math.isfinite(value) or not LOWEST_LR <= value <= HIGHEST_LR:
            raise CnnspecError(
                f"{option} {value:g}: a learning rate of the range test is a finite number from "
                f"{LOWEST_LR:g} to {HIGHEST_LR:g}",
                hint="the default range is --min-lr 1e-7 --max-lr 1",
            )
    if not min_lr < max_lr:
        raise CnnspecError(f"--min-lr {min_lr:g} and --max-lr {max_lr:g}: need 0 < min-lr < max-lr")


def check_out(folder: Path) -> None:
    """CnnspecError unless lr-find can write FOLDER/lr_find.png and .json: FOLDER (and each folder above it
    that exists) is a folder, and the two files are absent or regular files (a link is followed)."""
    for above in (folder, *folder.parents):
        if above.exists() and not above.is_dir():
            raise CnnspecError(
                f"--out {printable(str(folder))}: {printable(str(above))} is {_what(above)}, not a folder",
                hint="--out names the folder for lr_find.png and lr_find.json (made when missing)",
            )
        if above.exists():
            break
    for name in (PLOT, RECORD):
        try:
            write_target(folder / name)
        except OSError as exc:
            raise CnnspecError(f"cannot write {printable(str(folder / name))}: {exc.strerror or exc}") from None


def _what(path: Path) -> str:
    try:
        return describe_mode(os.stat(path).st_mode)
    except OSError:
        return "not a folder"
