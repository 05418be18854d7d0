"""Optimizer, parameter groups and the per-step learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from cnnspec.spec.model import OptimizerSpec, ScheduleSpec

# onecycle starts at lr/DIV and ends at lr/(DIV·FINAL_DIV), as torch's OneCycleLR defaults.
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


def param_groups(
    model: nn.Module, spec: OptimizerSpec, backbone: Iterable[nn.Module] = (), lr_scale: float = 1.0
) -> list[dict]:
    """Parameters split by (backbone or not) × (decayed or not), in a fixed order.

    Every parameter is in a group from the start, trainable or frozen: an optimizer
    skips parameters without gradients, so unfreezing later needs no new groups and a
    checkpoint's optimizer state always fits. `lr_scale` multiplies the backbone's LR.
    """
    backbone_ids = {id(p) for m in backbone for p in m.parameters()}
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {(b, d): [] for b in (False, True) for d in (True, False)}
    for _, p in model.named_parameters():
        # Norm weights and biases are the 0/1-dimensional parameters (timm's rule).
        decay = spec.decay_norms_and_biases or p.ndim > 1
        buckets[(id(p) in backbone_ids, decay)].append(p)
    groups = []
    for (is_backbone, decay), params in buckets.items():
        if params:
            groups.append(
                {
                    "params": params,
                    "weight_decay": spec.weight_decay if decay else 0.0,
                    "lr_scale": lr_scale if is_backbone else 1.0,
                }
            )
    return groups


def make_optimizer(groups: list[dict], spec: OptimizerSpec) -> torch.optim.Optimizer:
    """The optimizer the spec names, over `groups`."""
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov and spec.momentum > 0)
    betas = (spec.betas[0], spec.betas[1])
    if spec.name == "adam":
        return torch.optim.Adam(groups, lr=spec.lr, betas=betas)
    return torch.optim.AdamW(groups, lr=spec.lr, betas=betas)


@dataclass(frozen=True)
class Schedule:
    """Learning rate as a function of the optimizer step: linear warm-up, then the named curve."""

    spec: ScheduleSpec
    lr: float
    steps_per_epoch: int
    epochs: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def warmup_steps(self) -> int:
        # Cut at the run's length first: warm-up longer than the run warms up all of it.
        return min(round(min(self.spec.warmup_epochs, self.epochs) * self.steps_per_epoch), self.total_steps)

    def factor(self, step: int) -> float:
        """Multiplier of the peak LR at optimizer step `step` (0-based)."""
        s = self.spec
        warm = self.warmup_steps
        if step < warm:
            return (step + 1) / warm
        epoch = step / self.steps_per_epoch  # fractional epoch, for step/multistep
        if s.name == "constant":
            return 1.0
        if s.name == "step":
            return s.gamma ** math.floor(epoch / s.step_size)
        if s.name == "multistep":
            return s.gamma ** sum(epoch >= m for m in s.milestones)
        span = max(self.total_steps - warm, 1)
        t = min((step - warm) / span, 1.0)
        if s.name == "cosine":
            low = min(s.min_lr / self.lr, 1.0)
            return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * t))
        # onecycle: cosine up from lr/25 to lr over pct_start, then cosine down to lr/25e4.
        start, end = 1 / ONECYCLE_DIV, 1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
        if t < s.pct_start:
            u = t / s.pct_start
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * u))
        u = (t - s.pct_start) / (1 - s.pct_start)
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * u))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's LR for `step`; returns the peak group's LR."""
        lr = self.lr * self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
