"""train.ema: an exponential moving average of the weights, the model that validates, tests and is exported.

torch's own AveragedModel does the averaging (get_ema_multi_avg_fn: ema = decay·ema + (1−decay)·w,
one fused update for all tensors). `use_buffers=True` averages the BatchNorm running statistics
like the weights, so the averaged model's statistics belong to its averaged weights (airbench
and timm's ModelEmaV2 do the same); the integer `num_batches_tracked` is averaged too and means
nothing in the EMA model (BatchNorm reads it only when `momentum` is None, which cnnspec never sets).
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnspec.spec.model import EmaSpec


class WeightEma:
    """The EMA of `model`'s weights and buffers, updated every `spec.every` optimizer steps."""

    def __init__(self, model: nn.Module, spec: EmaSpec) -> None:
        self.every = spec.every
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(spec.decay), use_buffers=True)

    @property
    def module(self) -> nn.Module:
        """The averaged model: same class and state_dict keys as the trained one."""
        return self.averaged.module

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after optimizer step `step` (counted from 1 over the whole run)."""
        if step % self.every == 0:
            self.averaged.update_parameters(model)

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, stored: dict) -> None:
        self.averaged.load_state_dict(stored)
