"""Optimizer, parameter groups and the per-step learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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
class Replan:
    """The schedule planned again from optimizer step `at` (0-based, this run's steps) to end after `epochs`.

    A resume that changes train.epochs adds one (docs/training.md, "Changing train.epochs on resume").
    `continue`: the curve goes on from the last learning rate used, down to its end value at the new
    end; `restart`: a new cycle of the curve over the steps left. The warm-up is never planned again.
    """

    at: int
    epochs: int
    mode: Literal["continue", "restart"] = "continue"


@dataclass(frozen=True)
class Schedule:
    """Learning rate as a function of the optimizer step: linear warm-up, then the named curve.

    `epochs` is the length the run was first planned for; `replans` the changes of train.epochs
    made by resumes since, in order (none: the plain schedule over `epochs`).
    """

    spec: ScheduleSpec
    lr: float
    steps_per_epoch: int
    epochs: int
    replans: tuple[Replan, ...] = ()

    @property
    def total_steps(self) -> int:
        """Steps of the whole run, as last planned."""
        return self.steps_per_epoch * (self.replans[-1].epochs if self.replans else self.epochs)

    @property
    def warmup_steps(self) -> int:
        # Cut at the run's first planned length: warm-up longer than the run warms up all of it.
        first_total = self.steps_per_epoch * self.epochs
        return min(round(min(self.spec.warmup_epochs, self.epochs) * self.steps_per_epoch), first_total)

    def factor(self, step: int) -> float:
        """Multiplier of the peak LR at optimizer step `step` (0-based)."""
        warm = self.warmup_steps
        if step < warm:
            return (step + 1) / warm
        if not self.replans:
            epoch = step / self.steps_per_epoch  # fractional epoch, for step/multistep
            span = max(self.total_steps - warm, 1)
            return self._curve(epoch, min((step - warm) / span, 1.0))
        plan = self._plan_at(step)
        return self._curve((step - self._origin(plan)) / self.steps_per_epoch, self._progress(step, plan))

    def _curve(self, epoch: float, t: float) -> float:
        """The named curve after warm-up: `epoch` counts epochs for step/multistep, `t` in [0, 1] is the
        progress through the steps after warm-up for cosine/onecycle."""
        s = self.spec
        if s.name == "constant":
            return 1.0
        if s.name == "step":
            return s.gamma ** math.floor(epoch / s.step_size)
        if s.name == "multistep":
            return s.gamma ** sum(epoch >= m for m in s.milestones)
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

    def _plan_at(self, step: int) -> int:
        """Which plan `step` is under: 0 for the first, k for replans[k - 1]."""
        return max((k for k, r in enumerate(self.replans, start=1) if r.at <= step), default=0)

    def _origin(self, plan: int) -> int:
        """The step step/multistep count their epochs from: 0, or the last restart up to `plan`."""
        return max((r.at for r in self.replans[:plan] if r.mode == "restart"), default=0)

    def _progress(self, step: int, plan: int) -> float:
        """Progress in [0, 1] through the curve after warm-up at `step`, under plan `plan`."""
        warm = self.warmup_steps
        if plan == 0:
            return min(max(step - warm, 0) / max(self.steps_per_epoch * self.epochs - warm, 1), 1.0)
        replan = self.replans[plan - 1]
        total = self.steps_per_epoch * replan.epochs
        if replan.mode == "restart" or replan.at <= warm:  # a new curve (the old one had not started)
            begin = max(replan.at, warm)
            return min(max(step - begin, 0) / max(total - begin, 1), 1.0)
        # continue: from the last step taken under the previous plan, to the end of the curve at `total`
        last = replan.at - 1
        before = self._progress(last, self._plan_at_before(last, plan))
        return min(before + (1 - before) * (step - last) / max(total - last, 1), 1.0)

    def _plan_at_before(self, step: int, plan: int) -> int:
        """The plan `step` was under among the plans before `plan`."""
        return max((k for k in range(1, plan) if self.replans[k - 1].at <= step), default=0)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's LR for `step`; returns the peak group's LR."""
        lr = self.lr * self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
