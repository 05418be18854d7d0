"""Layers that change the layout: flatten, upsample, channel slices and shuffles, and the merges."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from cnnspec.layers.base import (
    LayerKind,
    Shape,
    ShapeProblem,
    Window,
    fmt_shape,
    pair,
    register,
    require_groups_divide,
)
from cnnspec.layers.conv import IntPair, PositiveInt

NonNegativeInt = Annotated[int, Field(ge=0)]

if TYPE_CHECKING:
    from torch import nn


@register
class Flatten(LayerKind):
    """Flatten C×H×W into a vector of C·H·W features (torch.nn.Flatten)."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        return (math.prod(self.single(inputs)),)

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        return Window(global_=True)

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Flatten()


@register
class Upsample(LayerKind):
    """Resize feature maps by a factor or to a size (torch.nn.Upsample)."""

    kind: ClassVar[str] = "upsample"
    scale_factor: IntPair | None = Field(None, description="Integer factor: s or [sH, sW]. Give this or size.")
    size: IntPair | None = Field(None, description="Output size: n or [H, W]. Give this or scale_factor.")
    mode: Literal["nearest", "bilinear", "bicubic"] = Field("nearest", description="Interpolation.")
    align_corners: bool | None = Field(None, description="For bilinear/bicubic; see torch.nn.Upsample.")

    @model_validator(mode="after")
    def _one_of(self) -> Upsample:
        if (self.scale_factor is None) == (self.size is None):
            raise ValueError("give exactly one of scale_factor and size")
        if self.align_corners is not None and self.mode == "nearest":
            raise ValueError("align_corners only applies to bilinear and bicubic")
        return self

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.image(inputs)
        if self.size is not None:
            return (c, *pair(self.size))
        assert self.scale_factor is not None
        s = pair(self.scale_factor)
        return (c, h * s[0], w * s[1])

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        return Window((1, 1), (inputs[0][1] / output[1], inputs[0][2] / output[2]))

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        scale = tuple(float(s) for s in pair(self.scale_factor)) if self.scale_factor is not None else None
        size = pair(self.size) if self.size is not None else None
        return nn.Upsample(size=size, scale_factor=scale, mode=self.mode, align_corners=self.align_corners)


class _Merge(LayerKind):
    many_inputs: ClassVar[bool] = True

    @model_validator(mode="after")
    def _needs_inputs(self) -> Any:
        if self.inputs is not None and len(self.inputs) < 2:
            raise ValueError(f"{self.kind} merges two or more layers: list at least two ids in inputs")
        return self


def broadcasts(shape: Shape, full: Shape) -> bool:
    """Whether `shape` may be combined element-wise with `full`, cnnspec's deliberately narrow broadcasting.

    An image operand is the full C×H×W, or C×1×1 (one value per channel: a squeeze-excite gate), 1×H×W
    (one per position: a spatial attention map) or 1×1×1 (one value); a vector is F or 1. Other mixes
    (C×1×W, 1 channel of a C×H×W, an image with a vector) are almost always wiring mistakes, so they
    are refused although torch would broadcast them.
    """
    if len(shape) != len(full):
        return False
    if len(full) == 1:
        return shape in (full, (1,))
    c, h, w = full
    return shape in (full, (c, 1, 1), (1, h, w), (1, 1, 1))


class _Elementwise(_Merge):
    """A merge that combines its inputs element by element, broadcasting as `broadcasts` allows."""

    advice: ClassVar[str]

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        full = max(inputs, key=math.prod)  # the first of the largest: what the others must broadcast to
        if not all(broadcasts(s, full) for s in inputs):
            c = full[0]
            allowed = [full, (c, 1, 1), (1, *full[1:]), (1, 1, 1)] if len(full) == 3 else [full, (1,)]
            forms = [fmt_shape(s) for s in dict.fromkeys(allowed)]  # once each: for C = 1, C×1×1 is 1×1×1
            said = forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"
            raise ShapeProblem(
                f"{self.kind} needs inputs of the same shape, or ones that broadcast to it, "
                f"got {' and '.join(fmt_shape(s) for s in inputs)}",
                hint=f"each input must be {said}; {self.advice}",
                field="inputs",
            )
        return full


@register
class Add(_Elementwise):
    """Element-wise sum of its inputs (a residual connection); shapes match, or broadcast (C×1×1, 1×H×W, 1×1×1)."""

    kind: ClassVar[str] = "add"
    advice: ClassVar[str] = "make the branches agree (e.g. a 1×1 conv with the right stride on the shortcut)"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.builder.modules import Sum

        return Sum()


@register
class Multiply(_Elementwise):
    """Element-wise product of its inputs (a squeeze-excite or attention gate); shapes match, or broadcast
    (C×1×1, 1×H×W, 1×1×1)."""

    kind: ClassVar[str] = "multiply"
    advice: ClassVar[str] = "a gate has the channels of what it scales (squeeze_excite builds one)"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.builder.modules import Product

        return Product()


@register
class Concat(_Merge):
    """Concatenate its inputs along the channel (or feature) axis (torch.cat(dim=1))."""

    kind: ClassVar[str] = "concat"

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        for other in inputs[1:]:
            if len(other) != len(first) or other[1:] != first[1:]:
                raise ShapeProblem(
                    "concat needs inputs that differ only in channels, got "
                    + " and ".join(fmt_shape(s) for s in inputs),
                    hint="resize the branches to the same H×W before concatenating",
                    field="inputs",
                )
        return (sum(s[0] for s in inputs), *first[1:])

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.builder.modules import Concat as ConcatModule

        return ConcatModule()


@register
class Slice(LayerKind):
    """Channels start:end of its input (x[:, start:end]), or chunk `index` of `chunks` equal chunks
    (ShuffleNetV2's x.chunk(2, dim=1)); the features of a vector likewise."""

    kind: ClassVar[str] = "slice"
    start: NonNegativeInt | None = Field(None, description="First channel taken (0-based); default 0.")
    end: PositiveInt | None = Field(None, description="One past the last channel taken; default: all the channels.")
    chunks: PositiveInt | None = Field(None, description="Split the channels into this many equal chunks ...")
    index: NonNegativeInt | None = Field(None, description="... and take this one (0-based).")

    @model_validator(mode="after")
    def _one_way(self) -> Slice:
        by_range = self.start is not None or self.end is not None
        if (self.chunks is None) != (self.index is None):
            raise ValueError("chunks and index go together: chunks: N, index: I takes chunk I of N")
        if not by_range and self.chunks is None:
            raise ValueError(
                "slice needs start and/or end (a channel range, e.g. {start: 0, end: 16}) "
                "or chunks and index (one of n equal chunks, e.g. {chunks: 2, index: 0})"
            )
        if by_range and self.chunks is not None:
            raise ValueError("give start/end (a channel range) or chunks and index, not both")
        if self.chunks is not None and self.index is not None and self.index >= self.chunks:
            raise ValueError(f"index {self.index} is not one of the {self.chunks} chunks (0 to {self.chunks - 1})")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be below end ({self.end})")
        return self

    def _range(self, shape: Shape) -> tuple[int, int]:
        c = shape[0]
        if self.chunks is not None and self.index is not None:
            if c % self.chunks:
                raise ShapeProblem(
                    f"slice into chunks={self.chunks} does not divide the {c} channels of {fmt_shape(shape)}",
                    hint="use a number of chunks that divides the channels, or start/end",
                    field="chunks",
                )
            size = c // self.chunks
            return self.index * size, (self.index + 1) * size
        start, end = self.start or 0, self.end if self.end is not None else c
        if end > c or start >= end:
            field = "end" if end > c else "start"
            raise ShapeProblem(
                f"slice takes channels {start}:{end} but its input {fmt_shape(shape)} has {c} (0:{c})",
                hint=f"keep start < end <= {c}",
                field=field,
            )
        return start, end

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        shape = self.single(inputs)
        start, end = self._range(shape)
        return (end - start, *shape[1:])

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.builder.modules import ChannelSlice

        return ChannelSlice(*self._range(inputs[0]))


@register
class ChannelShuffle(LayerKind):
    """ShuffleNet's channel shuffle: C channels as groups × C/groups, transposed (torch.nn.ChannelShuffle)."""

    kind: ClassVar[str] = "channel_shuffle"
    groups: PositiveInt = Field(description="Number of groups; must divide the channels.")

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.image(inputs)
        require_groups_divide(c, self.groups, "channel_shuffle groups", "groups")
        return (c, h, w)

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.builder.modules import ChannelShuffle as ShuffleModule

        return ShuffleModule(self.groups)
