"""Small torch modules for the merge kinds (torch has no nn.Module for sum or cat)."""

from __future__ import annotations

import torch
from torch import nn


class Sum(nn.Module):
    """Element-wise sum of several tensors."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Concatenation along the channel axis."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class Shortcut(nn.Sequential):
    """A residual shortcut: its layers applied to the first input (empty = identity).

    Further inputs only fix the target shape statically and are ignored here; being a
    Sequential keeps torchvision's state_dict names (`downsample.0.weight`).
    """

    def forward(self, x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for module in self:
            x = module(x)
        return x
