"""Resuming with another train.epochs: the learning rate goes on from where it was (or restarts, when asked).

Every run here is real training on scikit-learn's digits with a tiny CNN (5 steps per epoch); the
learning rate of each step is read from the optimizer the loop steps with, after the step's update.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnspec
from cnnspec.errors import CheckpointError
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights, save_state
from cnnspec.training.callbacks import Callback, Step, TrainStart
from cnnspec.training.progress import Reporter

LR, MIN_LR = 0.1, 0.001
STEPS = 1437 // 256  # digits' 80% train split, no validation, batch 256: 5 steps per epoch

SPEC = f"""\
name: extend-me
model:
  input: {{channels: 1, height: 8, width: 8}}
  layers:
    - conv2d: {{out_channels: 4, kernel_size: 3, padding: 1}}
    - relu
    - maxpool2d: {{kernel_size: 2}}
    - flatten
    - dropout: {{p: 0.1}}
    - linear: {{out_features: 10}}
data:
  dataset: {{name: digits}}
  batch_size: 256
  val_split: 0
  augment:
    - random_crop: {{size: 8, padding: 1}}
optimizer: {{name: sgd, lr: {LR}, momentum: 0.9}}
schedule: {{name: cosine, min_lr: {MIN_LR}}}
train: {{epochs: 2, seed: 5}}
"""


@dataclass
class LearningRates(Callback):
    """The learning rate of every optimizer step the loop takes, in order."""

    rates: list[float] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None

    def on_train_start(self, start: TrainStart) -> None:
        self.optimizer = start.optimizer

    def on_step_end(self, step: Step, model: nn.Module, loss: torch.Tensor) -> None:
        assert self.optimizer is not None
        self.rates.append(float(self.optimizer.param_groups[0]["lr"]))


class Messages(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "extend.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _train(spec: Path | None, out: Path, *overrides: str, resume: bool = False) -> tuple[list[float], list[str]]:
    rates, messages = LearningRates(), Messages()
    if resume:
        cnnspec.train(resume=out, overrides=overrides, progress=messages, callbacks=[rates])
    else:
        cnnspec.train(spec, out=out, overrides=overrides, progress=messages, callbacks=[rates])
    return rates.rates, messages.lines


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """A finished 2-epoch cosine run and its rates; each test resumes a copy of it."""
    folder = tmp_path_factory.mktemp("base")
    out = folder / "run"
    rates, _ = _train(_spec(folder), out)
    return out, rates


def _copy(base: tuple[Path, list[float]], tmp_path: Path) -> tuple[Path, list[float]]:
    out = tmp_path / "run"
    shutil.copytree(base[0], out)
    return out, base[1]


def _non_increasing(rates: list[float]) -> bool:
    return all(b <= a for a, b in itertools.pairwise(rates))


# Each test trains 2–3 tiny runs (about 1–2 s each on the shared 2-core machine): what it observes is
# the learning rate across real resumes, which no shorter path shows.
def test_more_epochs_under_cosine_continue_from_the_last_rate_down_to_min_lr(
    base: tuple[Path, list[float]], tmp_path: Path
) -> None:
    out, first = _copy(base, tmp_path)
    assert len(first) == 2 * STEPS
    second, lines = _train(None, out, "train.epochs=4", resume=True)
    assert len(second) == 2 * STEPS
    # The first step after resuming takes at most the last rate before it and at least 0.8 of it
    # (a continued cosine takes one more step down); a cosine planned afresh over 4 epochs would
    # be back at 0.5·LR here, 25× the last rate.
    assert 0.8 * first[-1] <= second[0] <= first[-1]
    assert _non_increasing(first + second)
    assert MIN_LR <= second[-1] <= MIN_LR + 0.01 * (LR - MIN_LR)  # at the floor at the new end
    (line,) = [line for line in lines if line.startswith("train.epochs is 4 now, 2 before")]
    assert "(schedule.extend: continue); --set schedule.extend=restart trains the new epochs" in line

    # A second extension continues from the first's curve in the same way; the plan is in the state and result.
    third, _ = _train(None, out, "train.epochs=6", resume=True)
    assert 0.8 * second[-1] <= third[0] <= second[-1] and _non_increasing(second + third)
    assert MIN_LR <= third[-1] <= MIN_LR + 0.01 * (LR - MIN_LR)
    plan = [
        {"from_epoch": 0.0, "epochs": 2},
        {"from_epoch": 2.0, "epochs": 4, "extend": "continue"},
        {"from_epoch": 4.0, "epochs": 6, "extend": "continue"},
    ]
    assert load_state(RunPaths(out).state)["lr_plan"] == plan
    assert json.loads((out / "result.json").read_text())["lr_plan"] == plan


def test_restart_starts_a_new_cosine_cycle_from_the_peak(base: tuple[Path, list[float]], tmp_path: Path) -> None:
    out, first = _copy(base, tmp_path)
    second, lines = _train(None, out, "train.epochs=4", "schedule.extend=restart", resume=True)
    assert first[-1] < 0.05 * LR and second[0] == pytest.approx(LR)
    assert second == pytest.approx(first, rel=1e-12)  # the 2 epochs left: the first 2 epochs' cycle again
    assert any("starts a new cycle" in line for line in lines)


def test_a_step_schedule_extended_on_resume_is_the_longer_run_bit_for_bit(tmp_path: Path) -> None:
    """step decays at fixed epochs, whatever the length: extending changes nothing the longer run would not do."""
    spec = _spec(
        tmp_path, SPEC.replace(f"{{name: cosine, min_lr: {MIN_LR}}}", "{name: step, step_size: 1, gamma: 0.5}")
    )
    extended, longer = tmp_path / "extended", tmp_path / "longer"
    before, _ = _train(spec, extended)
    after, _ = _train(None, extended, "train.epochs=3", resume=True)
    reference, _ = _train(spec, longer, "train.epochs=3")
    assert before + after == reference == [LR * 0.5**e for e in range(3) for _ in range(STEPS)]
    ours, ref = read_weights(RunPaths(extended).weights("last")), read_weights(RunPaths(longer).weights("last"))
    assert all(torch.equal(ours[k], ref[k]) for k in ref)


def test_a_state_without_a_plan_takes_the_epochs_of_the_runs_spec(
    base: tuple[Path, list[float]], tmp_path: Path
) -> None:
    """States written before cnnspec recorded the plan: spec.yaml (not yet rewritten) says what it was."""
    out, first = _copy(base, tmp_path)
    paths = RunPaths(out)
    state = load_state(paths.state)
    del state["lr_plan"]
    save_state(paths.state, state)
    second, _ = _train(None, out, "train.epochs=4", resume=True)
    assert 0.8 * first[-1] <= second[0] <= first[-1]


def test_a_damaged_plan_is_refused_with_the_state_named(base: tuple[Path, list[float]], tmp_path: Path) -> None:
    out, _ = _copy(base, tmp_path)
    paths = RunPaths(out)
    state = load_state(paths.state)
    state["lr_plan"] = [{"from_epoch": 0.0, "epochs": "two"}]
    save_state(paths.state, state)
    with pytest.raises(CheckpointError, match="lr_plan is not a learning-rate plan"):
        _train(None, out, "train.epochs=4", resume=True)
