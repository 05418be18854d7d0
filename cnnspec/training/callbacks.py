"""Callbacks: the supported hooks into the training loop.

A callback subclasses `Callback` and overrides the hooks it needs; every hook of the base
class does nothing. Pass instances as `cnnspec.train(..., callbacks=[...])`. The progress
display is one of them (`cnnspec.training.progress.ReporterCallback`); loggers and the
fault-injection tests (tests/reliability/test_numerics.py) are others.

Order of the hooks in one process::

    on_train_start                              once, after a resume has restored the state
      on_epoch_start                            per epoch
        on_batch → on_after_backward → on_step_end    per optimizer step
        on_progress                             at every host sync (each step on a CPU, every 20 on a GPU)
      on_epoch_end                              after the epoch's checkpoint is written
    on_test_end                                 the best weights' test predictions (rank 0, with a test split)
    on_train_end                                after result.json is written

Callbacks are called in the order given, after the progress display. Under torchrun every
rank calls its own callbacks (each sees its own shard of the batches); use
`TrainStart.rank` to act on one rank only. An exception raised by a hook propagates: it
stops the run as an error in the loop would (no checkpoint is written for the step).

This module imports no torch: its types appear in annotations only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True, slots=True)
class TrainStart:
    """What `on_train_start` is told about the run."""

    model: nn.Module  # the module being trained (not its DDP or torch.compile wrapper)
    optimizer: torch.optim.Optimizer
    run: Path  # the run directory
    epochs: int  # train.epochs
    steps_per_epoch: int  # optimizer steps per epoch in this process
    epoch: int  # epochs completed before this call (0 on a fresh run, the saved epoch on a resume)
    step: int  # optimizer steps taken before this call
    rank: int  # this process's rank (0 in a one-process run)
    world_size: int  # number of processes (1 in a one-process run)
    device: torch.device


@dataclass(frozen=True, slots=True)
class Step:
    """Where one optimizer step is; counts are 1-based, as in the loop's error messages."""

    epoch: int
    step: int  # within the epoch: "epoch 3, step 2" in a message is Step(epoch=3, step=2, ...)
    global_step: int  # over the whole run, the epochs before a resume included


@dataclass(frozen=True, slots=True)
class Progress:
    """Running figures of the current epoch, read from the device at a host sync (no extra sync)."""

    epoch: int
    step: int  # steps of this epoch done
    steps: int  # steps per epoch
    loss: float  # mean training loss of the epoch so far (this rank's shard)
    accuracy: float  # training accuracy of the epoch so far (this rank's shard)
    images_per_second: float  # of all ranks together


@dataclass(frozen=True, slots=True)
class TestEnd:
    """What `on_test_end` is told: the best weights' figures on the test split, and every prediction."""

    accuracy: float
    loss: float
    labels: torch.Tensor  # (N,) int64 class indices, CPU
    predictions: torch.Tensor  # (N,) int64 class indices, CPU
    class_names: list[str]


class Callback:
    """The base of every callback: each hook does nothing. Override the ones you need."""

    def on_train_start(self, start: TrainStart) -> None:
        """Training is about to start (or continue, after a resume)."""

    def on_epoch_start(self, epoch: int, done: int) -> None:
        """Epoch `epoch` (1-based) starts; `done` of its steps already ran before a resume."""

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of `step` after augmentation and normalisation, on the device, before the forward pass.

        `images` is (N, C, H, W) float; `targets` is (N,) class indices, or (N, classes)
        probabilities under mixup/cutmix. Return the pair to train on: the same tensors, or
        replacements of the same shapes (e.g. a clone with a NaN pixel, to test the loss check).
        """
        return images, targets

    def on_after_backward(self, step: Step, model: nn.Module) -> None:
        """Gradients are in `model`'s `.grad` (all-reduced under DDP; multiplied by the loss scale
        under fp16 AMP), before gradient clipping and the optimizer step. A hook may change them."""

    def on_step_end(self, step: Step, model: nn.Module, loss: torch.Tensor) -> None:
        """The optimizer step is done. `loss` is the batch's loss, a detached 0-d tensor on the
        device (reading it, e.g. `float(loss)`, waits for the GPU: leave that to `on_progress`).
        The loop's NaN/inf checks of the loss and the weights come after this hook, so damage
        done here is caught as the loop's own would be (on a CPU, at this step)."""

    def on_progress(self, progress: Progress) -> None:
        """Running figures of the epoch: every step on a CPU, every 20 steps on a GPU, and at its last step."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """The epoch's metrics.jsonl record (a copy), after its checkpoint was written."""

    def on_test_end(self, test: TestEnd) -> None:
        """The best weights were tested (rank 0 alone; not called when the data has no test split)."""

    def on_train_end(self, result: dict[str, Any]) -> None:
        """Training finished (not on an error or an interrupt): result.json's data on rank 0, `{}` on other ranks."""


def checked(callbacks: Sequence[Callback]) -> list[Callback]:
    """The callbacks as a list; anything that is not a Callback is a TypeError (a bug in the caller)."""
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be cnnspec.training.callbacks.Callback instances, got {cb!r}")
    return list(callbacks)


class CallbackList:
    """Calls each hook of every callback, in order (the trainer's side of the hooks)."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = checked(callbacks)

    def on_train_start(self, start: TrainStart) -> None:
        for cb in self.callbacks:
            cb.on_train_start(start)

    def on_epoch_start(self, epoch: int, done: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(epoch, done)

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for cb in self.callbacks:
            images, targets = cb.on_batch(step, images, targets)
        return images, targets

    def on_after_backward(self, step: Step, model: nn.Module) -> None:
        for cb in self.callbacks:
            cb.on_after_backward(step, model)

    def on_step_end(self, step: Step, model: nn.Module, loss: torch.Tensor) -> None:
        for cb in self.callbacks:
            cb.on_step_end(step, model, loss)

    def on_progress(self, progress: Progress) -> None:
        for cb in self.callbacks:
            cb.on_progress(progress)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(dict(record))

    def on_test_end(self, test: TestEnd) -> None:
        for cb in self.callbacks:
            cb.on_test_end(test)

    def on_train_end(self, result: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(dict(result))
