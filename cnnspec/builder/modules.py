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


class Product(nn.Module):
    """Element-wise product of several tensors (broadcast as the checker allowed)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class LayerScale(nn.Module):
    """x·γ with a learnt γ (ConvNeXt's layer scale); the parameter has torchvision's name."""

    def __init__(self, shape: tuple[int, ...], init: float):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.full(shape, init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.layer_scale


class ChannelSlice(nn.Module):
    """Channels start:end of the input (dim 1)."""

    def __init__(self, start: int, end: int):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start : self.end]

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}"


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle: channels as (groups, C/groups), transposed, flattened back.

    torchvision's `channel_shuffle` does the same with `view`s on the batch size; unflatten/flatten keep
    the batch axis symbolic, so the ONNX graph has a dynamic batch.
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        c = x.shape[1]
        return x.unflatten(1, (self.groups, c // self.groups)).transpose(1, 2).flatten(1, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels at each position of (N, C, H, W), as torchvision's ConvNeXt LayerNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelLinear(nn.Linear):
    """nn.Linear on the channels at each position of (N, C, H, W): torchvision's ConvNeXt applies its pointwise
    layers to channels-last tensors; the weight keeps nn.Linear's (out, C) shape, so its weights load."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, out, H, W)


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


class SqueezeConv(nn.Conv2d):
    """A squeeze-excite fc (1×1 conv with bias); further inputs fixed its width statically and are ignored."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)
