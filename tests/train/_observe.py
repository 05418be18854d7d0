"""A callback that records what the training loop really did, step by step, through the
supported hooks (cnnspec.training.callbacks) and forward hooks on the model being trained.

Tests use it to observe a behaviour (the dtype inside the forward under autocast, the memory
format a convolution computes in, the batch after augmentation, the loss of a step) rather
than infer it from a setting that was passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnspec.training.callbacks import Callback, Step, TrainStart


@dataclass
class Recorded:
    """One optimizer step, as the loop ran it (tensors detached, on the CPU)."""

    step: Step
    images: torch.Tensor  # (N, C, H, W): the batch trained on, after augmentation and normalisation
    targets: torch.Tensor  # (N,) class indices, or (N, K) probabilities under mixup/cutmix
    logits: torch.Tensor  # (N, K): the model's output in this step's training forward, as computed
    conv_dtype: torch.dtype  # the dtype the first Conv2d computed its output in
    conv_channels_last: bool  # the first Conv2d's output is channels_last (and not also plain contiguous)
    loss: float  # the loss the loop computed (on_step_end)


@dataclass
class Recorder(Callback):
    """Record the first `max_steps` training steps of a run (all of them when None).

    `forward_hooks=False` records only `start` (no hooks on the model, no steps).
    """

    max_steps: int | None = None
    forward_hooks: bool = True
    steps: list[Recorded] = field(default_factory=list)
    start: TrainStart | None = None
    _batch: tuple[torch.Tensor, torch.Tensor] | None = None
    _forward: dict[str, Any] = field(default_factory=dict)
    _hooks: list[torch.utils.hooks.RemovableHandle] = field(default_factory=list)

    def _recording(self) -> bool:
        return self.forward_hooks and (self.max_steps is None or len(self.steps) < self.max_steps)

    def on_train_start(self, start: TrainStart) -> None:
        self.start = start
        if not self.forward_hooks:
            return
        conv = next(m for m in start.model.modules() if isinstance(m, nn.Conv2d))

        def conv_hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if module.training:
                self._forward["conv"] = output.detach()

        def model_hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if module.training:  # not the evaluation passes
                self._forward["logits"] = output.detach()

        self._hooks = [conv.register_forward_hook(conv_hook), start.model.register_forward_hook(model_hook)]

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._batch = (images.detach().clone(), targets.detach().clone()) if self._recording() else None
        self._forward.clear()
        return images, targets

    def on_step_end(self, step: Step, model: nn.Module, loss: torch.Tensor) -> None:
        if self._batch is None:
            return
        conv = self._forward["conv"]
        channels_last = conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        images, targets = self._batch
        self.steps.append(
            Recorded(
                step=step,
                images=images.cpu(),
                targets=targets.cpu(),
                logits=self._forward["logits"].cpu(),
                conv_dtype=conv.dtype,
                conv_channels_last=channels_last,
                loss=float(loss),
            )
        )

    def on_train_end(self, result: dict[str, Any]) -> None:
        for handle in self._hooks:
            handle.remove()
