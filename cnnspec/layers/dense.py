"""Linear layers and normalisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from cnnspec.layers.base import LayerKind, Shape, ShapeProblem, fmt_shape, register, require_groups_divide
from cnnspec.layers.conv import PositiveInt

if TYPE_CHECKING:
    from torch import nn

Eps = Annotated[float, Field(gt=0, le=1)]
Momentum = Annotated[float, Field(ge=0, le=1)]


@register
class Linear(LayerKind):
    """Fully connected layer (torch.nn.Linear); in_features is inferred. `over: channels` applies it to the
    channels at every position of an image (ConvNeXt's pointwise layers on channels-last tensors)."""

    kind: ClassVar[str] = "linear"
    out_features: PositiveInt = Field(description="Number of output features.")
    bias: bool = Field(True, description="Add a learnable bias.")
    in_features: PositiveInt | None = Field(None, description="Input features; inferred. When written, it is checked.")
    over: Literal["features", "channels"] = Field(
        "features",
        description="'features': a vector in, a vector out; 'channels': C×H×W in, out_features×H×W out, the same "
        "weight (out_features, C) at every position, as nn.Linear on channels-last tensors (ConvNeXt).",
    )

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        shape = self.single(inputs)
        if self.over == "channels":
            if len(shape) != 3:
                raise ShapeProblem(
                    f"linear over channels expects an image (C×H×W) but its input is a vector of {shape[0]} features",
                    hint="drop `over: channels` for a vector",
                    field="over",
                )
            if self.in_features is not None and self.in_features != shape[0]:
                raise ShapeProblem(
                    f"linear expects in_features={self.in_features} but its input has {shape[0]} channels",
                    hint="drop in_features and let cnnspec infer it",
                    field="in_features",
                )
            return (self.out_features, shape[1], shape[2])
        if len(shape) != 1:
            raise ShapeProblem(
                f"linear expects a vector but its input is {fmt_shape(shape)}",
                hint="add `flatten` or `global_avgpool` before it",
            )
        if self.in_features is not None and self.in_features != shape[0]:
            raise ShapeProblem(
                f"linear expects in_features={self.in_features} but its input has {shape[0]} features",
                hint="drop in_features and let cnnspec infer it",
                field="in_features",
            )
        return (self.out_features,)

    def params(self, inputs: Sequence[Shape]) -> int:
        return inputs[0][0] * self.out_features + (self.out_features if self.bias else 0)

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        positions = output[1] * output[2] if self.over == "channels" else 1
        return inputs[0][0] * self.out_features * positions

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        out = {"weight": (self.out_features, inputs[0][0])}
        return out | ({"bias": (self.out_features,)} if self.bias else {})

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        if self.over == "channels":
            from cnnspec.builder.modules import ChannelLinear

            return ChannelLinear(inputs[0][0], self.out_features, bias=self.bias)
        return nn.Linear(inputs[0][0], self.out_features, bias=self.bias)


class _BatchNorm(LayerKind):
    rank: ClassVar[int]
    eps: Eps = Field(1e-5, description="Added to the variance for numerical stability.")
    momentum: Momentum = Field(0.1, description="Running-statistics update rate (PyTorch convention).")
    affine: bool = Field(True, description="Learn a scale and shift per channel.")
    num_features: PositiveInt | None = Field(None, description="Channels; inferred. When written, it is checked.")

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        shape = self.single(inputs)
        if len(shape) != self.rank:
            want = "an image (C×H×W)" if self.rank == 3 else "a vector"
            other = "batchnorm1d" if self.rank == 3 else "batchnorm2d"
            raise ShapeProblem(f"{self.kind} expects {want} but its input is {fmt_shape(shape)}", hint=f"use {other}")
        if self.num_features is not None and self.num_features != shape[0]:
            raise ShapeProblem(
                f"{self.kind} expects num_features={self.num_features} but its input has {shape[0]}",
                hint="drop num_features and let cnnspec infer it",
                field="num_features",
            )
        return shape

    def params(self, inputs: Sequence[Shape]) -> int:
        return 2 * inputs[0][0] if self.affine else 0

    def batchnorm_map(self, inputs: Sequence[Shape], output: Shape) -> tuple[int, ...]:
        return tuple(output[1:])

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return batchnorm_tensors(inputs[0][0], affine=self.affine)


def batchnorm_tensors(channels: int, *, affine: bool = True, prefix: str = "") -> dict[str, Shape]:
    """state_dict entries of torch.nn.BatchNorm{1,2}d: scale and shift, running statistics and step count."""
    out: dict[str, Shape] = {}
    if affine:
        out |= {f"{prefix}weight": (channels,), f"{prefix}bias": (channels,)}
    stats: dict[str, Shape] = {f"{prefix}running_mean": (channels,), f"{prefix}running_var": (channels,)}
    return out | stats | {f"{prefix}num_batches_tracked": ()}


@register
class BatchNorm2d(_BatchNorm):
    """Batch normalisation over the channels of an image (torch.nn.BatchNorm2d)."""

    kind: ClassVar[str] = "batchnorm2d"
    rank: ClassVar[int] = 3

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.BatchNorm2d(inputs[0][0], eps=self.eps, momentum=self.momentum, affine=self.affine)


@register
class BatchNorm1d(_BatchNorm):
    """Batch normalisation over the features of a vector (torch.nn.BatchNorm1d)."""

    kind: ClassVar[str] = "batchnorm1d"
    rank: ClassVar[int] = 1

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.BatchNorm1d(inputs[0][0], eps=self.eps, momentum=self.momentum, affine=self.affine)


@register
class LayerNorm(LayerKind):
    """Layer normalisation (torch.nn.LayerNorm): over the whole per-sample shape, or over the channels at
    each position (`over: channels`, torchvision's ConvNeXt LayerNorm2d)."""

    kind: ClassVar[str] = "layernorm"
    over: Literal["all", "channels"] = Field(
        "all",
        description="'all': normalise each sample over C×H×W (weight and bias of that shape); 'channels': over "
        "the C channels at every position, as ConvNeXt does (weight and bias of shape C).",
    )
    eps: Eps = Field(1e-5, description="Added to the variance for numerical stability.")
    elementwise_affine: bool = Field(True, description="Learn a scale and shift per element.")
    normalized_shape: list[PositiveInt] | None = Field(
        None, description="Inferred: the input's shape ('all') or [C] ('channels'). When written, it is checked."
    )

    def _normalized(self, inputs: Sequence[Shape]) -> Shape:
        shape = self.single(inputs)
        if self.over == "all":
            return shape
        if len(shape) != 3:
            raise ShapeProblem(
                f"layernorm over channels expects an image (C×H×W) but its input is a vector of {shape[0]} features",
                hint="drop `over: channels`: on a vector the default normalises the features",
                field="over",
            )
        return (shape[0],)

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        normalized = self._normalized(inputs)
        if self.normalized_shape is not None and tuple(self.normalized_shape) != normalized:
            raise ShapeProblem(
                f"layernorm expects normalized_shape={self.normalized_shape} but normalises "
                f"{fmt_shape(normalized)} of its input {fmt_shape(inputs[0])}",
                hint="drop normalized_shape and let cnnspec infer it",
                field="normalized_shape",
            )
        return inputs[0]

    def params(self, inputs: Sequence[Shape]) -> int:
        return 2 * math.prod(self._normalized(inputs)) if self.elementwise_affine else 0

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        normalized = self._normalized(inputs)
        return {"weight": normalized, "bias": normalized} if self.elementwise_affine else {}

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        from cnnspec.builder.modules import LayerNorm2d

        cls = nn.LayerNorm if self.over == "all" else LayerNorm2d
        return cls(list(self._normalized(inputs)), eps=self.eps, elementwise_affine=self.elementwise_affine)


@register
class GroupNorm(LayerKind):
    """Group normalisation (torch.nn.GroupNorm); channels are split into num_groups."""

    kind: ClassVar[str] = "groupnorm"
    num_groups: PositiveInt = Field(description="Number of channel groups; must divide the channels.")
    eps: Eps = Field(1e-5, description="Added to the variance for numerical stability.")
    affine: bool = Field(True, description="Learn a scale and shift per channel.")
    num_channels: PositiveInt | None = Field(None, description="Channels; inferred. When written, it is checked.")

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.image(inputs)
        if self.num_channels is not None and self.num_channels != c:
            raise ShapeProblem(
                f"groupnorm expects num_channels={self.num_channels} but its input has {c}",
                hint="drop num_channels and let cnnspec infer it",
                field="num_channels",
            )
        require_groups_divide(c, self.num_groups, "num_groups", "num_groups")
        return (c, h, w)

    def params(self, inputs: Sequence[Shape]) -> int:
        return 2 * inputs[0][0] if self.affine else 0

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"weight": (inputs[0][0],), "bias": (inputs[0][0],)} if self.affine else {}

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.GroupNorm(self.num_groups, inputs[0][0], eps=self.eps, affine=self.affine)
