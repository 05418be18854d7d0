"""The trainer's callback hooks (cnnspec.training.callbacks): order, counts, and what each one sees.

The expected sequence is written out from the spec's own numbers (64 images, batch 16: 4 steps
per epoch), and what the hooks were given is compared with what the run wrote to disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import cnnspec
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import read_weights
from cnnspec.training.callbacks import Callback, Progress, Step, TrainStart

SPEC = """\
name: hooks
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - relu
    - flatten
    - linear: {out_features: 4}
data:
  dataset: {name: synthetic, num_samples: 64, num_classes: 4}
  batch_size: 16
  val_split: 0
optimizer: {name: sgd, lr: 0.05}
train: {epochs: 2, seed: 1}
"""
STEPS = 64 // 16


class Recorder(Callback):
    """Writes down every hook call, with what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.start: TrainStart | None = None
        self.losses: list[float] = []
        self.records: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None

    def on_train_start(self, start: TrainStart) -> None:
        self.start = start
        self.events.append(("train_start",))

    def on_epoch_start(self, epoch: int, done: int) -> None:
        self.events.append(("epoch_start", epoch, done))

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.events.append(("batch", step.epoch, step.step, step.global_step, tuple(images.shape)))
        return images, targets

    def on_after_backward(self, step: Step, model: nn.Module) -> None:
        grads = all(p.grad is not None for p in model.parameters())
        self.events.append(("after_backward", step.global_step, grads))

    def on_step_end(self, step: Step, model: nn.Module, loss: torch.Tensor) -> None:
        self.losses.append(float(loss))
        self.events.append(("step_end", step.global_step))

    def on_progress(self, progress: Progress) -> None:
        self.events.append(("progress", progress.epoch, progress.step, progress.steps))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.events.append(("epoch_end", record["epoch"]))

    def on_train_end(self, result: dict[str, Any]) -> None:
        self.result = result
        self.events.append(("train_end",))


def _expected(epochs: range, before: int = 0) -> list[tuple[Any, ...]]:
    """The documented order, one process on a CPU (progress at every step)."""
    events: list[tuple[Any, ...]] = [("train_start",)]
    g = before
    for epoch in epochs:
        events.append(("epoch_start", epoch, 0))
        for step in range(1, STEPS + 1):
            g += 1
            events += [
                ("batch", epoch, step, g, (16, 1, 8, 8)),
                ("after_backward", g, True),
                ("step_end", g),
                ("progress", epoch, step, STEPS),
            ]
        events.append(("epoch_end", epoch))
    return [*events, ("train_end",)]


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "hooks.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def test_hooks_run_in_order_and_see_what_the_run_writes(spec: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    run = cnnspec.train(spec, out=tmp_path / "run", progress=False, callbacks=[recorder])
    assert recorder.events == _expected(range(1, 3))

    start = recorder.start
    assert start is not None
    assert (start.epochs, start.steps_per_epoch, start.epoch, start.step) == (2, STEPS, 0, 0)
    assert (start.rank, start.world_size, start.run, start.device.type) == (0, 1, run, "cpu")
    last = read_weights(RunPaths(run).weights("last"))  # the model given is the one that trained
    assert start.model.state_dict().keys() == last.keys()
    assert all(torch.equal(v, last[k]) for k, v in start.model.state_dict().items())
    assert start.optimizer.param_groups[0]["params"][0] is next(start.model.parameters())

    # The records and the result are the ones on disk; the losses are those the epoch averages.
    metrics = [json.loads(line) for line in RunPaths(run).metrics.read_text().splitlines()]
    assert recorder.records == metrics
    assert recorder.result == json.loads(RunPaths(run).result.read_text())
    for epoch, record in enumerate(metrics):
        losses = recorder.losses[epoch * STEPS : (epoch + 1) * STEPS]
        assert record["train_loss"] == pytest.approx(sum(losses) / STEPS, rel=1e-6)


def test_hooks_count_on_from_the_saved_step_after_a_resume(spec: Path, tmp_path: Path) -> None:
    run = cnnspec.train(spec, out=tmp_path / "run", progress=False)
    recorder = Recorder()
    cnnspec.train(resume=run, overrides=["train.epochs=3"], progress=False, callbacks=[recorder])
    start = recorder.start
    assert start is not None
    assert (start.epochs, start.epoch, start.step) == (3, 2, 2 * STEPS)
    assert recorder.events == _expected(range(3, 4), before=2 * STEPS)
    assert [r["epoch"] for r in recorder.records] == [3]


def test_something_that_is_not_a_callback_is_refused_before_anything_is_written(spec: Path, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Callback instances"):
        cnnspec.train(spec, out=tmp_path / "run", progress=False, callbacks=[object()])  # type: ignore[list-item]
    assert not (tmp_path / "run").exists()


class ZeroImages(Callback):
    """Replaces every batch by black images; records the first conv's weight gradient after each backward."""

    def __init__(self) -> None:
        self.conv_grads: list[torch.Tensor] = []
        self.bias_grads: list[torch.Tensor] = []

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(images), targets

    def on_after_backward(self, step: Step, model: nn.Module) -> None:
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        assert conv.weight.grad is not None and conv.bias is not None and conv.bias.grad is not None
        self.conv_grads.append(conv.weight.grad.clone())
        self.bias_grads.append(conv.bias.grad.clone())


def test_the_batch_on_batch_returns_is_the_one_trained_on(spec: Path, tmp_path: Path) -> None:
    # A conv's weight gradient is a sum of input pixels times output gradients: zero for black images,
    # while its bias still gets a gradient. Had the original batch been used, the weight's would not vanish.
    zero = ZeroImages()
    cnnspec.train(spec, out=tmp_path / "run", progress=False, callbacks=[zero])
    assert len(zero.conv_grads) == 2 * STEPS
    assert all(torch.count_nonzero(g) == 0 for g in zero.conv_grads)
    assert any(torch.count_nonzero(g) > 0 for g in zero.bias_grads)
