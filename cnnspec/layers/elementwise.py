"""Activations, dropout and other layers that keep the shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from cnnspec.layers.base import LayerKind, Shape, register

if TYPE_CHECKING:
    from torch import nn

Probability = Annotated[float, Field(ge=0, le=1)]


class _Elementwise(LayerKind):
    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        return self.single(inputs)


@register
class ReLU(_Elementwise):
    """max(0, x) (torch.nn.ReLU)."""

    kind: ClassVar[str] = "relu"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.ReLU()


@register
class LeakyReLU(_Elementwise):
    """max(0, x) + negative_slope·min(0, x) (torch.nn.LeakyReLU)."""

    kind: ClassVar[str] = "leaky_relu"
    negative_slope: float = Field(0.01, description="Slope for negative inputs.", ge=0, le=1)

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.LeakyReLU(self.negative_slope)


@register
class GELU(_Elementwise):
    """Gaussian error linear unit (torch.nn.GELU)."""

    kind: ClassVar[str] = "gelu"
    approximate: Literal["none", "tanh"] = Field("none", description="'tanh' uses the faster approximation.")

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.GELU(approximate=self.approximate)


@register
class SiLU(_Elementwise):
    """x·sigmoid(x), a.k.a. swish (torch.nn.SiLU)."""

    kind: ClassVar[str] = "silu"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.SiLU()


@register
class ELU(_Elementwise):
    """Exponential linear unit (torch.nn.ELU)."""

    kind: ClassVar[str] = "elu"
    alpha: float = Field(1.0, description="Value the function tends to for large negative inputs (−alpha).", gt=0)

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.ELU(self.alpha)


@register
class Sigmoid(_Elementwise):
    """1 / (1 + e^−x) (torch.nn.Sigmoid)."""

    kind: ClassVar[str] = "sigmoid"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Sigmoid()


@register
class Tanh(_Elementwise):
    """Hyperbolic tangent (torch.nn.Tanh)."""

    kind: ClassVar[str] = "tanh"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Tanh()


@register
class Softmax(_Elementwise):
    """Softmax over the channel/feature axis (torch.nn.Softmax(dim=1)).

    Training uses cross-entropy on logits: a final softmax is only for exported models
    that should output probabilities.
    """

    kind: ClassVar[str] = "softmax"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Softmax(dim=1)


@register
class Dropout(_Elementwise):
    """Zero each element with probability p during training (torch.nn.Dropout)."""

    kind: ClassVar[str] = "dropout"
    p: Probability = Field(0.5, description="Probability of zeroing an element.")

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Dropout(self.p)


@register
class Dropout2d(_Elementwise):
    """Zero whole channels with probability p during training (torch.nn.Dropout2d)."""

    kind: ClassVar[str] = "dropout2d"
    p: Probability = Field(0.5, description="Probability of zeroing a channel.")

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        return self.image(inputs)

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Dropout2d(self.p)


@register
class Identity(_Elementwise):
    """Passes its input through (torch.nn.Identity)."""

    kind: ClassVar[str] = "identity"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Identity()
