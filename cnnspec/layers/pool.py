"""Pooling: windowed, adaptive and global."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from cnnspec.layers.base import LayerKind, Shape, ShapeProblem, Window, fmt_shape, pair, register
from cnnspec.layers.conv import IntPair, NonNegPair, auto_padding, conv_size

if TYPE_CHECKING:
    from torch import nn


class _WindowPool(LayerKind):
    slides_window: ClassVar[bool] = True
    kernel_size: IntPair = Field(description="Window size: k or [kH, kW].")
    stride: IntPair | None = Field(None, description="Stride; defaults to kernel_size.")
    padding: NonNegPair | Literal["auto"] = Field(
        0,
        description="Implicit padding per side (at most half the kernel, as torch allows), or 'auto': d·(k−1)/2 "
        "for an odd kernel, which keeps the size at stride 1 (with dilation > 1 that is more than torch allows: "
        "an error).",
    )
    ceil_mode: bool = Field(False, description="Round the output size up instead of down.")

    def _dilation(self) -> tuple[int, int]:
        return (1, 1)

    def _stride(self) -> tuple[int, int]:
        return pair(self.stride if self.stride is not None else self.kernel_size)

    def _padding(self) -> tuple[int, int]:
        if self.padding == "auto":
            return auto_padding(pair(self.kernel_size), self._dilation())
        return pair(self.padding)

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.image(inputs)
        k, s, p, d = pair(self.kernel_size), self._stride(), self._padding(), self._dilation()
        for axis in (0, 1):
            if p[axis] * 2 > k[axis] and self.padding == "auto":
                raise ShapeProblem(
                    f"padding: auto computes d·(k−1)/2 = {d[axis]}·({k[axis]}−1)/2 = {p[axis]} for "
                    f"{'HW'[axis]} (the padding that keeps the size), more than torch's {self.kind} allows: "
                    f"at most half the kernel size {k[axis]}",
                    hint=f"write the padding as a number ≤ {k[axis] // 2} (the output then shrinks), or use dilation 1",
                    field="padding",
                )
            if p[axis] * 2 > k[axis]:
                raise ShapeProblem(
                    f"padding {p[axis]} is more than half the kernel size {k[axis]}",
                    hint="PyTorch allows padding ≤ kernel_size / 2",
                    field="padding",
                )
        h_out, h_note = conv_size(h, k[0], s[0], p[0], d[0], "H", ceil=self.ceil_mode)
        w_out, w_note = conv_size(w, k[1], s[1], p[1], d[1], "W", ceil=self.ceil_mode)
        if h_out < 1 or w_out < 1:
            raise ShapeProblem(
                f"{self.kind} output would be {h_out}×{w_out}: "
                f"its input {fmt_shape((c, h, w))} is smaller than the window",
                notes=(h_note, w_note),
                hint="pool less often, or use a smaller kernel_size",
            )
        return (c, h_out, w_out)

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        k, s, d = pair(self.kernel_size), self._stride(), self._dilation()
        return Window((d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), (float(s[0]), float(s[1])))


@register
class MaxPool2d(_WindowPool):
    """Max pooling (torch.nn.MaxPool2d)."""

    kind: ClassVar[str] = "maxpool2d"
    dilation: IntPair = Field(1, description="Spacing between window taps.")

    def _dilation(self) -> tuple[int, int]:
        return pair(self.dilation)

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.MaxPool2d(
            pair(self.kernel_size), self._stride(), self._padding(), pair(self.dilation), ceil_mode=self.ceil_mode
        )


@register
class AvgPool2d(_WindowPool):
    """Average pooling (torch.nn.AvgPool2d)."""

    kind: ClassVar[str] = "avgpool2d"
    count_include_pad: bool = Field(True, description="Count the zero padding in the average.")

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.AvgPool2d(
            pair(self.kernel_size),
            self._stride(),
            self._padding(),
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )


class _AdaptivePool(LayerKind):
    output_size: IntPair = Field(1, description="Output size: n or [H, W].")

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, _, _ = self.image(inputs)
        h, w = pair(self.output_size)
        return (c, h, w)

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        return Window(global_=True)


@register
class AdaptiveAvgPool2d(_AdaptivePool):
    """Adaptive average pooling to a fixed output size (torch.nn.AdaptiveAvgPool2d)."""

    kind: ClassVar[str] = "adaptive_avgpool2d"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.AdaptiveAvgPool2d(pair(self.output_size))


@register
class AdaptiveMaxPool2d(_AdaptivePool):
    """Adaptive max pooling to a fixed output size (torch.nn.AdaptiveMaxPool2d)."""

    kind: ClassVar[str] = "adaptive_maxpool2d"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.AdaptiveMaxPool2d(pair(self.output_size))


@register
class GlobalAvgPool(LayerKind):
    """Average over all positions, giving a vector of C features (Keras GlobalAveragePooling2D)."""

    kind: ClassVar[str] = "global_avgpool"

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, _, _ = self.image(inputs)
        return (c,)

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        return Window(global_=True)

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
