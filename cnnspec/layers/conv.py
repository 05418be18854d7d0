"""Convolutions: conv2d and conv_transpose2d."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from cnnspec.layers.base import LayerKind, Shape, ShapeProblem, Window, fmt_shape, pair, register

if TYPE_CHECKING:
    from torch import nn

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
IntPair = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
NonNegPair = NonNegInt | Annotated[list[NonNegInt], Field(min_length=2, max_length=2)]


def conv_size(size: int, k: int, s: int, p: int, d: int, axis: str, *, ceil: bool = False) -> tuple[int, str]:
    """Output size by H_out = ⌊(H + 2p − d·(k−1) − 1)/s⌋ + 1 and the arithmetic behind it."""
    num = size + 2 * p - d * (k - 1) - 1
    rounding = "⌈⌉" if ceil else "⌊⌋"
    out = (math.ceil(num / s) if ceil else num // s) + 1
    if ceil and out > 1 and (out - 1) * s >= size + p:
        out -= 1  # PyTorch: the last window must start inside the input or its left padding
    text = f"{axis}: {rounding[0]}({size} + 2·{p} − {d}·({k}−1) − 1)/{s}{rounding[1]} + 1 = {out}"
    return out, text


def auto_padding(k: tuple[int, int], d: tuple[int, int]) -> tuple[int, int]:
    """`padding: auto`: d·(k−1)/2 per side, which keeps the size at stride 1 and gives ⌈H/s⌉ at any stride."""
    for axis in (0, 1):
        if k[axis] % 2 == 0:
            raise ShapeProblem(
                f"padding: auto needs an odd kernel_size, got {k[axis]} for {'HW'[axis]}",
                notes=(f"an even kernel pads d·(k−1)/2 = {d[axis] * (k[axis] - 1) / 2:g}: not the same on both sides",),
                hint="use an odd kernel_size (3, 5, 7), or write the padding as a number",
                field="padding",
            )
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


def check_in_channels(layer: LayerKind, written: int | None, actual: int, name: str = "in_channels") -> None:
    if written is not None and written != actual:
        raise ShapeProblem(
            f"{layer.kind} expects {name}={written} but its input has {actual} channels",
            hint=f"drop {name} and let cnnspec infer it",
            field=name,
        )


def check_groups(layer: LayerKind, groups: int, c_in: int, c_out: int) -> None:
    for what, n in (("input", c_in), ("output", c_out)):
        if n % groups:
            raise ShapeProblem(
                f"groups={groups} does not divide the {n} {what} channels",
                notes=(f"{n} / {groups} = {n / groups:.3g}",),
                hint=f"use a groups value that divides {c_in}"
                if c_in == c_out
                else f"use a groups value that divides both {c_in} and {c_out}",
                field="groups",
            )


def check_whiten(out_channels: int, c: int, k: tuple[int, int], groups: int) -> None:
    """init: whiten makes ± pairs of the patch covariance's eigenvectors: C·kH·kW of them at most."""
    most = 2 * c * k[0] * k[1]
    if groups != 1:
        raise ShapeProblem("init: whiten needs groups: 1", hint="drop groups from this conv2d", field="init")
    if out_channels % 2 or out_channels > most:
        raise ShapeProblem(
            f"init: whiten needs an even out_channels of at most 2·C·kH·kW = 2·{c}·{k[0]}·{k[1]} = {most}, "
            f"got {out_channels}",
            notes=("each eigenvector of the patch covariance gives two filters, +v and −v",),
            hint=f"use out_channels {most} (airbench's choice) or an even number below it",
            field="out_channels",
        )


@register
class Conv2d(LayerKind):
    """2-D convolution (torch.nn.Conv2d)."""

    kind: ClassVar[str] = "conv2d"
    slides_window: ClassVar[bool] = True
    out_channels: PositiveInt = Field(description="Number of output channels (filters).")
    kernel_size: IntPair = Field(description="Kernel size: k or [kH, kW].")
    stride: IntPair = Field(1, description="Stride: s or [sH, sW].")
    padding: NonNegPair | Literal["same", "valid", "auto"] = Field(
        0,
        description="Zero padding per side: p, [pH, pW], 'same' (stride 1 only), 'valid' (= 0) "
        "or 'auto' (d·(k−1)/2 for an odd kernel, at any stride).",
    )
    dilation: IntPair = Field(1, description="Spacing between kernel taps: d or [dH, dW].")
    groups: PositiveInt = Field(1, description="Grouped convolution: channels are split into this many groups.")
    bias: bool = Field(True, description="Add a learnable bias per output channel.")
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = Field(
        "zeros", description="How the border is padded."
    )
    in_channels: PositiveInt | None = Field(None, description="Input channels; inferred. When written, it is checked.")
    init: Literal["default", "whiten"] = Field(
        "default",
        description="default: torch's init; whiten: before training, the filters whiten the training images' "
        "kernel-sized patches at this layer's input (eigenvectors of their covariance, ±, as airbench): "
        "out_channels even, at most 2·C·kH·kW, groups 1.",
    )
    freeze_weight: bool = Field(
        False, description="Keep the weight at its initial value (airbench's frozen whitening layer); bias trains."
    )

    def _padding(self) -> tuple[int, int] | None:
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            return None
        if self.padding == "auto":
            return auto_padding(pair(self.kernel_size), pair(self.dilation))
        return pair(self.padding)

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.image(inputs)
        check_in_channels(self, self.in_channels, c)
        check_groups(self, self.groups, c, self.out_channels)
        k, s, d = pair(self.kernel_size), pair(self.stride), pair(self.dilation)
        if self.init == "whiten":
            check_whiten(self.out_channels, c, k, self.groups)
        pad = self._padding()
        self._check_padding_mode((h, w), k, d, pad)
        if pad is None:
            if s != (1, 1):
                raise ShapeProblem(
                    "padding: same needs stride 1", hint="write the padding as a number, e.g. (k−1)/2", field="padding"
                )
            return (self.out_channels, h, w)
        h_out, h_note = conv_size(h, k[0], s[0], pad[0], d[0], "H")
        w_out, w_note = conv_size(w, k[1], s[1], pad[1], d[1], "W")
        if h_out < 1 or w_out < 1:
            raise ShapeProblem(
                f"conv2d output would be {h_out}×{w_out}: its input {fmt_shape((c, h, w))} is smaller than the kernel",
                notes=(h_note, w_note),
                hint="add padding, use a smaller kernel or stride, or downsample less before this layer",
            )
        return (self.out_channels, h_out, w_out)

    def _check_padding_mode(
        self, size: tuple[int, int], k: tuple[int, int], d: tuple[int, int], pad: tuple[int, int] | None
    ) -> None:
        # torch: reflect padding must be smaller than the input, circular at most the input.
        if self.padding_mode not in ("reflect", "circular"):
            return
        for axis in (0, 1):
            # padding: same pads d·(k−1) in all, the larger half on the right.
            widest = pad[axis] if pad is not None else d[axis] * (k[axis] - 1) - d[axis] * (k[axis] - 1) // 2
            need = widest + 1 if self.padding_mode == "reflect" else widest
            if size[axis] < need:
                raise ShapeProblem(
                    f"{self.padding_mode} padding of {widest} needs an input {'HW'[axis]} of at least {need}, "
                    f"got {size[axis]}",
                    hint="pad less, or use padding_mode: zeros or replicate",
                    field="padding_mode",
                )

    def params(self, inputs: Sequence[Shape]) -> int:
        c = inputs[0][0]
        k = pair(self.kernel_size)
        return self.out_channels * (c // self.groups) * k[0] * k[1] + (self.out_channels if self.bias else 0)

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        c = inputs[0][0]
        k = pair(self.kernel_size)
        return output[0] * output[1] * output[2] * (c // self.groups) * k[0] * k[1]

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        k, s, d = pair(self.kernel_size), pair(self.stride), pair(self.dilation)
        return Window((d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), (float(s[0]), float(s[1])))

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        k = pair(self.kernel_size)
        out = {"weight": (self.out_channels, inputs[0][0] // self.groups, k[0], k[1])}
        return out | ({"bias": (self.out_channels,)} if self.bias else {})

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        pad = self._padding()
        return nn.Conv2d(
            inputs[0][0],
            self.out_channels,
            pair(self.kernel_size),
            stride=pair(self.stride),
            padding="same" if pad is None else pad,
            dilation=pair(self.dilation),
            groups=self.groups,
            bias=self.bias,
            padding_mode=self.padding_mode,
        )


@register
class ConvTranspose2d(LayerKind):
    """Transposed 2-D convolution (torch.nn.ConvTranspose2d), for upsampling."""

    kind: ClassVar[str] = "conv_transpose2d"
    slides_window: ClassVar[bool] = True
    out_channels: PositiveInt = Field(description="Number of output channels.")
    kernel_size: IntPair = Field(description="Kernel size: k or [kH, kW].")
    stride: IntPair = Field(1, description="Stride (the upsampling factor).")
    padding: NonNegPair = Field(0, description="Implicit zero padding removed from each side of the output.")
    output_padding: NonNegPair = Field(0, description="Extra size added to one side of the output.")
    dilation: IntPair = Field(1, description="Spacing between kernel taps.")
    groups: PositiveInt = Field(1, description="Grouped convolution.")
    bias: bool = Field(True, description="Add a learnable bias per output channel.")
    in_channels: PositiveInt | None = Field(None, description="Input channels; inferred. When written, it is checked.")

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.image(inputs)
        check_in_channels(self, self.in_channels, c)
        check_groups(self, self.groups, c, self.out_channels)
        k, s, d = pair(self.kernel_size), pair(self.stride), pair(self.dilation)
        p, op = pair(self.padding), pair(self.output_padding)
        for axis in (0, 1):
            if op[axis] >= max(s[axis], d[axis]):
                raise ShapeProblem("output_padding must be smaller than stride or dilation", field="output_padding")
        sizes = []
        notes = []
        for axis, size in ((0, h), (1, w)):
            out = (size - 1) * s[axis] - 2 * p[axis] + d[axis] * (k[axis] - 1) + op[axis] + 1
            notes.append(
                f"{'HW'[axis]}: ({size}−1)·{s[axis]} − 2·{p[axis]} + {d[axis]}·({k[axis]}−1) + {op[axis]} + 1 = {out}"
            )
            sizes.append(out)
        if min(sizes) < 1:
            raise ShapeProblem(
                f"conv_transpose2d output would be {sizes[0]}×{sizes[1]}", notes=notes, hint="reduce padding"
            )
        return (self.out_channels, sizes[0], sizes[1])

    def params(self, inputs: Sequence[Shape]) -> int:
        k = pair(self.kernel_size)
        return inputs[0][0] * (self.out_channels // self.groups) * k[0] * k[1] + (self.out_channels if self.bias else 0)

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        c, h, w = inputs[0]
        k = pair(self.kernel_size)
        return c * h * w * (self.out_channels // self.groups) * k[0] * k[1]

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        k, s = pair(self.kernel_size), pair(self.stride)
        return Window(k, (1.0 / s[0], 1.0 / s[1]))

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        k = pair(self.kernel_size)  # torch stores transposed weights as (in, out/groups, kH, kW)
        out = {"weight": (inputs[0][0], self.out_channels // self.groups, k[0], k[1])}
        return out | ({"bias": (self.out_channels,)} if self.bias else {})

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.ConvTranspose2d(
            inputs[0][0],
            self.out_channels,
            pair(self.kernel_size),
            stride=pair(self.stride),
            padding=pair(self.padding),
            output_padding=pair(self.output_padding),
            dilation=pair(self.dilation),
            groups=self.groups,
            bias=self.bias,
        )
