"""Layers that change the layout: flatten, upsample and the merges add and concat."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from cnnspec.layers.base import LayerKind, Shape, ShapeProblem, Window, fmt_shape, pair, register
from cnnspec.layers.conv import IntPair

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


def _describe(inputs: Sequence[Shape], names: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{n} is {fmt_shape(s)}" for n, s in zip(names, inputs, strict=False))


@register
class Add(_Merge):
    """Element-wise sum of its inputs (a residual connection); all shapes must match."""

    kind: ClassVar[str] = "add"

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        for other in inputs[1:]:
            if other != first:
                raise ShapeProblem(
                    f"add needs inputs of the same shape, got {' and '.join(fmt_shape(s) for s in inputs)}",
                    hint="make the branches agree (e.g. a 1×1 conv with the right stride on the shortcut)",
                    field="inputs",
                )
        return first

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.build.modules import Sum

        return Sum()


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
        from cnnspec.build.modules import Concat as ConcatModule

        return ConcatModule()
