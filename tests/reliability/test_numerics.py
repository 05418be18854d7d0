"""Numerics: a NaN batch, an absurd learning rate, overflowing weights, and AMP's skipped steps.

A bad step stops the run with an error naming its epoch and step; no checkpoint with a
non-finite number is ever written (every checkpoint is scanned afterwards), and the run
resumes from the last good epoch to the same end as a run that never failed. Faults are
injected at a known step through the trainer's callbacks (cnnspec.training.callbacks), the
supported hooks a user has too: a NaN pixel in one augmented batch (`on_batch`), an inf
written into a batchnorm buffer (`on_step_end`), inf gradients (`on_after_backward`).
Those runs go through `cnnspec.train(callbacks=...)`, so they check the TrainingError the
CLI would print; exit 1 without a traceback for it is checked by the absurd-lr test, in a
real `python -m cnnspec` process.
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnspec
from cnnspec.errors import TrainingError
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights
from cnnspec.training.callbacks import Callback, Step
from cnnspec.training.progress import PlainReporter
from tests.reliability._reliability_helpers import (
    LONG_EPOCHS,
    STEPS_PER_EPOCH,
    assert_checkpoints_finite_and_loadable,
    assert_refused,
    child_env,
    cli,
    report,
)

EPOCHS = LONG_EPOCHS
STEP_NAMED = re.compile(r"at epoch (\d+), step (\d+)")
DEFAULT_SCALE = 65536.0  # torch.amp.GradScaler's init_scale; it halves on every skipped step


def _epoch_step(global_step: int) -> tuple[int, int]:
    return (global_step - 1) // STEPS_PER_EPOCH + 1, (global_step - 1) % STEPS_PER_EPOCH + 1


def _named_step(message: str) -> tuple[int, int]:
    found = STEP_NAMED.search(message)
    assert found, f"the error does not name the epoch and step: {message}"
    return int(found.group(1)), int(found.group(2))


def _same_weights(run: Path, reference: Path) -> bool:
    ours, ref = read_weights(RunPaths(run).weights("last")), read_weights(RunPaths(reference).weights("last"))
    return all(torch.equal(ours[k], ref[k]) for k in ref)


class NaNBatchAt(Callback):
    """The `global_step`-th training batch reaches the model with one NaN pixel."""

    def __init__(self, global_step: int) -> None:
        self.global_step = global_step
        self.injected: list[Step] = []

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if step.global_step != self.global_step:
            return images, targets
        self.injected.append(step)
        x = images.clone()
        x[0, 0, 0, 0] = math.nan
        return x, targets


class DamageAfterStep(Callback):
    """Apply `damage` to the model right after optimizer step `global_step`."""

    def __init__(self, global_step: int, damage: Callable[[nn.Module], None]) -> None:
        self.global_step, self.damage = global_step, damage

    def on_step_end(self, step: Step, model: nn.Module, loss: torch.Tensor) -> None:
        if step.global_step == self.global_step:
            self.damage(model)


class OverflowingGradients(Callback):
    """The first conv's weight gradient is inf at the given backward passes (1-based), as an fp16 overflow is."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps
        self.backward_passes = 0

    def on_after_backward(self, step: Step, model: nn.Module) -> None:
        self.backward_passes += 1
        if self.backward_passes in self.steps:
            weight = next(p for p in model.parameters() if p.ndim == 4)
            assert weight.grad is not None
            weight.grad.fill_(math.inf)


def _scan(run: Path) -> int:
    """Every checkpoint the run holds is finite (and loads); returns how many there are."""
    return assert_checkpoints_finite_and_loadable(run)


def test_a_nan_batch_stops_the_run_naming_the_step(spec: Path, reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    global_step = 2 * STEPS_PER_EPOCH + 2  # epoch 3, step 2
    nan = NaNBatchAt(global_step)
    with pytest.raises(TrainingError) as info:
        cnnspec.train(spec, out=run, progress=False, callbacks=[nan])
    message = info.value.format()  # what the CLI prints
    assert "error: the loss became non-finite (NaN or inf)" in message
    assert "kept the last checkpoint (epoch 2)" in message
    assert [(s.epoch, s.step) for s in nan.injected] == [_epoch_step(global_step)] == [(3, 2)]
    assert _named_step(message) == (3, 2)
    assert _scan(run) == 3
    assert load_state(RunPaths(run).state)["epoch"] == 2

    # The data is fixed: resume from epoch 2 (no callback now) ends where a clean run ends.
    assert cli("train", "--resume", run, "--quiet").code == 0
    assert _same_weights(run, reference)
    report("nan-batch", injected_at="epoch 3 step 2", named=f"epoch {_named_step(message)[0]} step 2")


def test_an_absurd_learning_rate_stops_the_run_naming_the_step(spec: Path, tmp_path: Path) -> None:
    """A real `python -m cnnspec` process, as a user would run it."""
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "cnnspec", "train", str(spec), "--out", str(run), "--set", "optimizer.lr=1e6"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "non-finite (NaN or inf)" in proc.stderr and "no checkpoint (none was finished)" in proc.stderr
    epoch, step = _named_step(proc.stderr)
    assert epoch == 1
    assert _scan(run) == 0  # nothing was written: the first epoch never finished
    report("absurd-lr", lr="1e6", stopped_at=f"epoch {epoch} step {step}", message=proc.stderr.splitlines()[-2])


def test_an_absurd_learning_rate_on_resume_keeps_the_good_checkpoints(spec: Path, tmp_path: Path) -> None:
    """Huge but finite weights are still saved (epoch 3 may survive lr=1e6); the first non-finite
    step stops the run, and the checkpoint of the epoch before it is the one kept."""
    run = cnnspec.train(spec, out=tmp_path / "run", overrides=["train.epochs=2"], progress=False)
    result = cli("train", "--resume", run, "--set", "optimizer.lr=1e6", "--set", "train.epochs=4", "--quiet")
    epoch, _ = _named_step(result.stderr)
    assert epoch in (3, 4)
    assert_refused(result, "non-finite (NaN or inf)", f"kept the last checkpoint (epoch {epoch - 1})")
    assert load_state(RunPaths(run).state)["epoch"] == epoch - 1
    assert _scan(run) == 3


def test_weights_that_overflow_while_the_loss_stays_finite_stop_the_run(spec: Path, tmp_path: Path) -> None:
    """In training mode batchnorm normalises with the batch's statistics, so an inf in its running
    variance leaves the loss finite: only the check of the weights themselves catches it."""
    global_step = STEPS_PER_EPOCH + 3  # epoch 2, step 3

    def poison(model: nn.Module) -> None:
        bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        assert bn.running_var is not None
        bn.running_var[0] = math.inf

    run = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        cnnspec.train(spec, out=run, progress=False, callbacks=[DamageAfterStep(global_step, poison)])
    message = info.value.format()
    assert "the weights became non-finite (NaN or inf)" in message
    assert _named_step(message) == (2, 3)
    assert _scan(run) == 3
    assert load_state(RunPaths(run).state)["epoch"] == 1


def test_inf_gradients_without_amp_stop_the_run_naming_the_step(spec: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        cnnspec.train(spec, out=run, progress=False, callbacks=[OverflowingGradients({6})])
    assert _named_step(info.value.format()) == _epoch_step(6) == (2, 2)
    assert _scan(run) == 3
    assert load_state(RunPaths(run).state)["epoch"] == 1


def _amp_run_with_overflows(
    spec: Path, out: Path, steps: set[int], device: str
) -> tuple[dict[str, object], list[dict[str, object]], float, str]:
    """Train under fp16 AMP with overflowing gradients; the progress lines are the CLI's (PlainReporter)."""
    overflow = OverflowingGradients(steps)
    progress = io.StringIO()
    cnnspec.train(
        spec,
        out=out,
        overrides=["train.amp=fp16", f"train.device={device}"],
        progress=PlainReporter(progress),
        callbacks=[overflow],
    )
    assert overflow.backward_passes == EPOCHS * STEPS_PER_EPOCH  # one backward pass per step
    run_result = json.loads((out / "result.json").read_text())
    metrics = [json.loads(line) for line in RunPaths(out).metrics.read_text().splitlines()]
    scale = float(load_state(RunPaths(out).state)["scaler"]["scale"])
    return run_result, metrics, scale, progress.getvalue()


def test_amp_skipped_steps_are_counted_and_reported_on_cpu(spec: Path, tmp_path: Path) -> None:
    """fp16 autocast and GradScaler run on a CPU too: overflowing steps are skipped, not applied,
    and counted per epoch (metrics.jsonl, the progress line) and per run (result.json)."""
    steps = {3, 4, 7}  # epoch 1 steps 3 and 4; epoch 2 step 3
    result, metrics, scale, lines = _amp_run_with_overflows(spec, tmp_path / "run", steps, "cpu")
    assert result["amp"] == "fp16"
    assert [m["skipped_steps"] for m in metrics] == [2, 1, 0, 0]
    assert result["skipped_steps"] == 3
    assert scale == DEFAULT_SCALE * 0.5**3  # the scaler's own record: halved once per skipped step
    assert "epoch 1/4" in lines and "skipped 2" in lines.splitlines()[0]
    assert _scan(tmp_path / "run") == 3
    report("amp-skipped-cpu", injected_overflows=len(steps), counted=result["skipped_steps"], scale=scale)


@pytest.mark.gpu
def test_amp_skipped_steps_are_counted_and_reported_on_a_gpu(spec: Path, tmp_path: Path) -> None:
    """Real fp16 on CUDA: the GPU path reads the counts every 20 steps, not every step."""
    steps = {2, 5, 6, 11}
    result, metrics, scale, _ = _amp_run_with_overflows(spec, tmp_path / "run", steps, "cuda")
    assert str(result["device"]).startswith("cuda")
    assert [m["skipped_steps"] for m in metrics] == [1, 2, 1, 0]
    assert result["skipped_steps"] == 4
    assert scale == DEFAULT_SCALE * 0.5**4
    assert _scan(tmp_path / "run") == 3
    report("amp-skipped-gpu", injected_overflows=len(steps), counted=result["skipped_steps"], scale=scale)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_one_non_finite_weight_or_buffer_makes_the_model_not_finite(bad: float) -> None:
    from cnnspec.training.checkpoint import all_finite

    for tensor in ("weight", "running_var"):  # a parameter, then a buffer
        conv, norm = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)
        model = nn.Sequential(conv, norm)
        assert all_finite(model)
        target = conv.weight if tensor == "weight" else norm.running_var
        assert target is not None
        with torch.no_grad():
            target.reshape(-1)[1] = bad
        assert not all_finite(model), tensor


def test_huge_finite_weights_whose_sum_overflows_are_finite() -> None:
    from cnnspec.training.checkpoint import all_finite

    model = nn.Linear(4, 4)
    with torch.no_grad():
        model.weight.fill_(3.0e38)  # finite; their float32 sum is inf
    assert not math.isfinite(float(model.weight.detach().sum())) and all_finite(model)
