"""Activations, dropout and other layers that keep the shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from cnnspec.layers.base import Float32, LayerKind, Shape, ShapeProblem, fmt_shape, register
from cnnspec.layers.conv import PositiveInt
from cnnspec.spec.base import StrictModel

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
    alpha: Float32 = Field(1.0, description="Value the function tends to for large negative inputs (−alpha).", gt=0)

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
class ReLU6(_Elementwise):
    """min(max(0, x), 6) (torch.nn.ReLU6; MobileNetV2)."""

    kind: ClassVar[str] = "relu6"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.ReLU6()


@register
class Hardtanh(_Elementwise):
    """x clipped to [min_val, max_val] (torch.nn.Hardtanh)."""

    kind: ClassVar[str] = "hardtanh"
    min_val: Float32 = Field(-1.0, description="Lower end of the linear region.")
    max_val: Float32 = Field(1.0, description="Upper end of the linear region; above min_val.")

    @model_validator(mode="after")
    def _ordered(self) -> Hardtanh:
        if self.max_val <= self.min_val:
            raise ValueError(f"max_val ({self.max_val}) must be above min_val ({self.min_val})")
        return self

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Hardtanh(self.min_val, self.max_val)


@register
class Hardswish(_Elementwise):
    """x·relu6(x + 3)/6 (torch.nn.Hardswish; MobileNetV3)."""

    kind: ClassVar[str] = "hardswish"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Hardswish()


@register
class Hardsigmoid(_Elementwise):
    """relu6(x + 3)/6 (torch.nn.Hardsigmoid; MobileNetV3's squeeze-excite gate)."""

    kind: ClassVar[str] = "hardsigmoid"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Hardsigmoid()


@register
class Mish(_Elementwise):
    """x·tanh(softplus(x)) (torch.nn.Mish)."""

    kind: ClassVar[str] = "mish"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Mish()


@register
class Softplus(_Elementwise):
    """log(1 + e^(beta·x))/beta, linear above `threshold` (torch.nn.Softplus)."""

    kind: ClassVar[str] = "softplus"
    beta: Float32 = Field(1.0, description="Sharpness: larger is closer to relu.", gt=0)
    threshold: Float32 = Field(20.0, description="Above beta·x > threshold the function is x (for stability).", gt=0)

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Softplus(self.beta, self.threshold)


@register
class PReLU(_Elementwise):
    """max(0, x) + a·min(0, x) with a learnt slope a (torch.nn.PReLU), shared or one per channel."""

    kind: ClassVar[str] = "prelu"
    num_parameters: PositiveInt | Literal["channels"] = Field(
        1,
        description="1: one slope shared by every channel; 'channels': one per channel (inferred). "
        "Another number is checked against the input's channels.",
    )
    init: Float32 = Field(0.25, description="Initial slope.")

    def _slopes(self, shape: Shape) -> int:
        if self.num_parameters == "channels":
            return shape[0]
        if self.num_parameters not in (1, shape[0]):
            raise ShapeProblem(
                f"prelu has num_parameters={self.num_parameters} but its input {fmt_shape(shape)} has "
                f"{shape[0]} channels",
                hint="use 1 (one shared slope) or 'channels' (one per channel)",
                field="num_parameters",
            )
        return self.num_parameters

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        shape = self.single(inputs)
        self._slopes(shape)
        return shape

    def params(self, inputs: Sequence[Shape]) -> int:
        return self._slopes(inputs[0])

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"weight": (self._slopes(inputs[0]),)}

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.PReLU(self._slopes(inputs[0]), init=self.init)


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


class Ramp(StrictModel):
    """A value that changes linearly across the copies of the innermost `repeat` around the layer."""

    SCHEMA_TITLE = "ramp"

    start: Probability = Field(description="The value in the first copy.")
    end: Probability = Field(description="The value in the last copy.")

    def at(self, index: int, count: int) -> float:
        """Copy `index` of `count` gets start + (end − start)·index/(count − 1); a single copy gets start."""
        if count == 1:
            return self.start
        return self.start + (self.end - self.start) * index / (count - 1)


@register
class DropPath(_Elementwise):
    """Stochastic depth: in training, zero a whole sample with probability p and scale the kept ones by
    1/(1 − p); identity in eval (torchvision.ops.StochasticDepth(p, "row")). Put it at the end of a
    residual body (or use the residual's `drop_path`) so a dropped sample keeps only its shortcut.
    """

    kind: ClassVar[str] = "drop_path"
    p: Probability | Ramp = Field(
        description="Probability of dropping a sample; or {start, end}: a ramp across the copies of the "
        "innermost `repeat` around this layer (copy i of n gets start + (end − start)·i/(n − 1))."
    )

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        if isinstance(self.p, Ramp):
            raise ShapeProblem(
                "drop_path's p ramps across the copies of a `repeat`, but this layer is in no repeat",
                hint="give p as a number, or put the layer inside a repeat",
                field="p",
            )
        return self.single(inputs)

    def at_copy(self, index: int, count: int) -> DropPath:
        if isinstance(self.p, Ramp):
            return self.model_copy(update={"p": self.p.at(index, count)})
        return self

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torchvision.ops import StochasticDepth

        assert not isinstance(self.p, Ramp)  # the checker refused an unresolved ramp
        return StochasticDepth(self.p, "row")


@register
class Scale(_Elementwise):
    """A learnt per-channel scale, as ConvNeXt's layer scale: x·γ with γ of shape C×1×1 (F for a vector).

    The parameter is called `layer_scale`, torchvision's name in ConvNeXt's CNBlock. With `id: self`
    it is the enclosing list's own parameter (CNBlock's `features.1.0.layer_scale`).
    """

    kind: ClassVar[str] = "scale"
    self_names: ClassVar[frozenset[str]] = frozenset({"layer_scale"})
    init: Float32 = Field(1e-6, description="Initial value of every γ (ConvNeXt: 1e-6).")

    @staticmethod
    def _shape(shape: Shape) -> Shape:
        return (shape[0], 1, 1) if len(shape) == 3 else (shape[0],)  # broadcasts over H×W like torchvision's

    def params(self, inputs: Sequence[Shape]) -> int:
        return inputs[0][0]

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"layer_scale": self._shape(inputs[0])}

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.builder.modules import LayerScale

        return LayerScale(self._shape(inputs[0]), self.init)


@register
class Identity(_Elementwise):
    """Passes its input through (torch.nn.Identity)."""

    kind: ClassVar[str] = "identity"

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        return nn.Identity()
