"""The `cbam` layer kind: channel attention, then spatial attention, on a C×H×W map.

The same class shape as cnnspec's own kinds: fields, shape rule, counts, receptive-field step,
static tensors, and a builder. Nothing here imports torch at the top, so `cnnspec validate`
reads specs that use `cbam` without torch; `build` imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from cnnspec.layers import LayerKind, Shape, ShapeProblem, Window, register

if TYPE_CHECKING:
    from torch import nn


@register
class CBAM(LayerKind):
    """Convolutional Block Attention Module: a channel gate from avg- and max-pooled features
    through a shared MLP, then a spatial gate from a k×k conv over channel mean and max."""

    kind: ClassVar[str] = "cbam"
    reduction: int = Field(16, ge=1, description="The shared MLP's hidden width is channels // reduction.")
    kernel_size: int = Field(7, ge=1, description="Side of the spatial gate's convolution (odd).")

    def _hidden(self, inputs: Sequence[Shape]) -> int:
        c, _, _ = self.image(inputs)
        if c // self.reduction < 1:
            raise ShapeProblem(
                f"cbam with reduction {self.reduction} on {c} channels leaves no hidden unit",
                hint=f"use a reduction of at most {c}",
                field="reduction",
            )
        return c // self.reduction

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        if self.kernel_size % 2 == 0:
            raise ShapeProblem(
                f"cbam's kernel_size must be odd to keep the map's size, got {self.kernel_size}",
                hint=f"use {self.kernel_size + 1}",
                field="kernel_size",
            )
        self._hidden(inputs)
        return inputs[0]

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        c, k, hidden = inputs[0][0], self.kernel_size, self._hidden(inputs)
        return {
            "mlp.0.weight": (hidden, c, 1, 1),
            "mlp.2.weight": (c, hidden, 1, 1),
            "spatial.weight": (1, 2, k, k),
        }

    def params(self, inputs: Sequence[Shape]) -> int:
        total = 0
        for shape in self.tensors(inputs).values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        c, h, w = inputs[0]
        hidden = self._hidden(inputs)
        # The MLP runs on the average- and the max-pooled vector; the gate's conv at every pixel.
        return 2 * 2 * c * hidden + h * w * 2 * self.kernel_size**2

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        return Window(global_=True)  # the channel gate pools the whole map

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec_cbam.module import CBAMModule

        return CBAMModule(inputs[0][0], self._hidden(inputs), self.kernel_size)
