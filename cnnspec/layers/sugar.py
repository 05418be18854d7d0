"""Sugar kinds that expand into other layers: residual, repeat, named blocks and squeeze-excite."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from cnnspec.layers.base import (
    ID_PATTERN,
    REGISTRY,
    LayerItem,
    LayerKind,
    Shape,
    ShapeProblem,
    Window,
    fmt_shape,
    register,
)
from cnnspec.layers.conv import PositiveInt
from cnnspec.layers.elementwise import DropPath, Probability, Ramp
from cnnspec.layers.pool import AdaptiveAvgPool2d

if TYPE_CHECKING:
    from torch import nn

    from cnnspec.checker.expand import Expander


@register
class Residual(LayerKind):
    """A residual block: output = body(x) + shortcut(x), then an optional activation."""

    kind: ClassVar[str] = "residual"
    sugar: ClassVar[bool] = True
    body: list[LayerItem] = Field(description="The layers of the main branch.", min_length=1)
    shortcut: Literal["auto", "identity"] | list[LayerItem] = Field(
        "auto",
        description="'identity', a list of layers, or 'auto': identity when the body keeps the shape, "
        "else a 1×1 conv (with the body's stride) + batchnorm2d, named `downsample` like torchvision.",
    )
    shortcut_id: str | None = Field(
        None,
        description="Name of the shortcut under the residual's id: default `downsample` for 'auto' "
        "(torchvision's ResNet), `shortcut` for a list; RegNet calls it `proj`.",
        pattern=ID_PATTERN,
        max_length=64,
    )
    activation: Literal["relu", "gelu", "silu", "leaky_relu"] | None = Field(
        None, description="Activation applied after the sum (ResNet uses relu)."
    )
    drop_path: Probability | Ramp | None = Field(
        None,
        description="Stochastic depth: a drop_path layer after the body, named `stochastic_depth` like "
        "torchvision's; a number, or {start, end} ramping across the copies of the innermost repeat.",
    )

    def expand(self, expander: Expander, path: tuple[Any, ...], name: str, prev: str | None) -> str:
        from cnnspec.layers.reshape import Add

        scope = expander.child_scope(name)
        body_out = expander.expand_list(self.body, (*path, "body"), scope, prev)
        if self.drop_path is not None:
            drop = DropPath(p=self.drop_path)
            body_out = expander.add_node(f"{name}.stochastic_depth", drop, [body_out], (*path, "drop_path"), None)
        if self.shortcut_id is not None:
            expander.refuse_attribute_name(
                f"{name}.{self.shortcut_id}",
                (*path, "shortcut_id"),
                "the shortcut",
                hint=f"choose another shortcut_id, e.g. '{self.shortcut_id.strip('_') or 'shortcut'}_'",
            )
        if self.shortcut == "identity":
            short_out = prev
        elif self.shortcut == "auto":
            short = f"{name}.{self.shortcut_id or 'downsample'}"
            short_out = expander.add_node(short, Projection(), [prev, body_out], path, scope=None)
        else:
            short = f"{name}.{self.shortcut_id or 'shortcut'}"
            if expander.claim(
                short, (*path, "shortcut"), "the shortcut", hint="give the residual another shortcut_id", layer=False
            ):
                scope = expander.child_scope(short)
                short_out = expander.expand_list(self.shortcut, (*path, "shortcut"), scope, prev)
            else:
                short_out = prev  # reported; its layers would only repeat the error
        out = expander.add_node(f"{name}.add", Add(), [body_out, short_out], path, scope=None)
        if self.activation:
            act = REGISTRY[self.activation]()  # the activation's own layer kind
            out = expander.add_node(f"{name}.{self.activation}", act, [out], path, scope=None)
        return out


class Projection(LayerKind):
    """The automatic residual shortcut: identity when shapes match, else 1×1 conv + batchnorm.

    Its second input is only read for its shape (the body's output it must match).
    Not registered: users write `shortcut: auto`.
    """

    kind: ClassVar[str] = "shortcut"
    many_inputs: ClassVar[bool] = True
    value_inputs: ClassVar[int | None] = 1

    def _stride(self, x: Shape, target: Shape) -> tuple[int, int] | None:
        if x == target:
            return None
        if len(x) != 3 or len(target) != 3:
            raise ShapeProblem(f"residual shortcut cannot map {fmt_shape(x)} to {fmt_shape(target)}")
        # Per axis, the smallest stride s with ⌊(H − 1)/s⌋ + 1 = H_target (a 1×1 conv, no padding), as
        # torchvision's downsample does: 25 → 13 needs s = 2, like the body's padded 3×3 conv.
        sizes = zip(x[1:], target[1:], strict=True)
        strides = [next((s for s in range(1, n + 1) if (n - 1) // s + 1 == t), None) for n, t in sizes]
        if strides[0] is None or strides[1] is None:
            raise ShapeProblem(
                f"residual body turns {fmt_shape(x)} into {fmt_shape(target)}: "
                "no 1×1 conv stride maps one to the other",
                hint="write the shortcut layers yourself",
            )
        return (strides[0], strides[1])

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        self._stride(inputs[0], inputs[1])
        return inputs[1]

    def params(self, inputs: Sequence[Shape]) -> int:
        if self._stride(inputs[0], inputs[1]) is None:
            return 0
        return inputs[0][0] * inputs[1][0] + 2 * inputs[1][0]

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        if self._stride(inputs[0], inputs[1]) is None:
            return 0
        return inputs[0][0] * output[0] * output[1] * output[2]

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        s = self._stride(inputs[0], inputs[1]) or (1, 1)
        return Window((1, 1), (float(s[0]), float(s[1])))

    def batchnorm_map(self, inputs: Sequence[Shape], output: Shape) -> tuple[int, ...] | None:
        # The 1×1 conv + batchnorm normalises the body's output size; the identity holds no batch norm.
        return None if self._stride(inputs[0], inputs[1]) is None else tuple(output[1:])

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        from cnnspec.layers.dense import batchnorm_tensors

        if self._stride(inputs[0], inputs[1]) is None:
            return {}
        c_in, c_out = inputs[0][0], inputs[1][0]  # Shortcut(conv, bn) is a Sequential: entries 0 and 1
        return {"0.weight": (c_out, c_in, 1, 1)} | batchnorm_tensors(c_out, prefix="1.")

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        from cnnspec.builder.modules import Shortcut

        stride = self._stride(inputs[0], inputs[1])
        if stride is None:
            return Shortcut()
        return Shortcut(
            nn.Conv2d(inputs[0][0], inputs[1][0], 1, stride=stride, bias=False), nn.BatchNorm2d(inputs[1][0])
        )


@register
class Repeat(LayerKind):
    """n copies of a list of layers, each with its own weights; copy i is named ID.PREFIX{start + i} (ID.0, ID.1, …)."""

    kind: ClassVar[str] = "repeat"
    sugar: ClassVar[bool] = True
    n: Annotated[int, Field(ge=0, le=10_000)] = Field(
        description="Number of copies; 0 gives none (the repeat passes its input on), so `n: $flag` makes "
        "layers optional."
    )
    start: Annotated[int, Field(ge=0)] = Field(
        0, description="Index of the first copy: with `id: self`, copies continue the enclosing list's index."
    )
    prefix: str = Field(
        "",
        description="Text before each copy's index: `block1-` names copies block1-0, block1-1 (torchvision's RegNet).",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9_-]*)?$",
        max_length=60,
    )
    layers: list[LayerItem] = Field(description="The layers to repeat.", min_length=1)

    def expand(self, expander: Expander, path: tuple[Any, ...], name: str, prev: str | None) -> str:
        out = prev
        single = len(self.layers) == 1 and self.layers[0].layer.id is None
        for i in range(self.n):
            copy = f"{name}.{self.prefix}{self.start + i}"
            if expander.refuse_attribute_name(
                copy, (*path, "prefix"), f"copy {i} of this repeat", hint="choose another `prefix`, or `start`"
            ):
                continue
            hint = "start the copies further on (`start`), give them a `prefix`, or rename the other layer"
            if not expander.claim(copy, path, f"copy {i} of this repeat", hint=hint, layer=single):
                continue
            first = len(expander.nodes)
            if single:
                out = expander.expand_list(
                    self.layers, (*path, "layers"), expander.child_scope(name), out, names=[copy]
                )
            else:
                out = expander.expand_list(self.layers, (*path, "layers"), expander.child_scope(copy), out)
            # Nodes are kept in the order they were added: this copy's are the last ones. A repeat inside
            # this one has placed its own copies already, so the innermost repeat decides (a ramp there
            # is a number by now).
            added = itertools.islice(reversed(expander.nodes.values()), len(expander.nodes) - first)
            for node in added:
                node.layer = node.layer.at_copy(i, self.n)
        from cnnspec.checker.expand import INPUT

        return out or INPUT


@register
class Block(LayerKind):
    """Use a named block from `model.blocks`, with arguments for its parameters."""

    kind: ClassVar[str] = "block"
    sugar: ClassVar[bool] = True
    name: str = Field(description="Name of the block in `model.blocks`.")
    args: dict[str, Any] = Field(default_factory=dict, description="Values for the block's parameters.")

    def expand(self, expander: Expander, path: tuple[Any, ...], name: str, prev: str | None) -> str:
        return expander.expand_block(self, path, name, prev)


@register
class Group(LayerKind):
    """A named group of layers: ids inside become ID.child (e.g. torchvision's layer2.0.conv1)."""

    kind: ClassVar[str] = "group"
    sugar: ClassVar[bool] = True
    layers: list[LayerItem] = Field(description="The layers of the group, in order.", min_length=1)

    def expand(self, expander: Expander, path: tuple[Any, ...], name: str, prev: str | None) -> str:
        return expander.expand_list(self.layers, (*path, "layers"), expander.child_scope(name), prev)


@register
class SqueezeExcite(LayerKind):
    """Squeeze-and-excitation (torchvision.ops.SqueezeExcitation): x·gate(fc2(act(fc1(avgpool(x))))).

    Expands to ID.avgpool, ID.fc1 (1×1 conv), ID.activation, ID.fc2 (1×1 conv back to C),
    ID.scale_activation and ID.multiply, so its state_dict keys are torchvision's
    (ID.fc1.weight, ID.fc1.bias, ID.fc2.weight, ID.fc2.bias).
    """

    kind: ClassVar[str] = "squeeze_excite"
    sugar: ClassVar[bool] = True
    squeeze_channels: PositiveInt | None = Field(
        None, description="Width of the squeeze (fc1's output channels). Give this or reduction."
    )
    reduction: PositiveInt | None = Field(
        None, description="Squeeze to max(1, C // reduction) channels of the C input channels (SENet: 16)."
    )
    activation: Literal["relu", "relu6", "silu", "gelu", "hardswish", "mish"] = Field(
        "relu", description="Activation after fc1 (EfficientNet: silu)."
    )
    gate: Literal["sigmoid", "hardsigmoid"] = Field(
        "sigmoid", description="The gate after fc2, torchvision's scale_activation (MobileNetV3: hardsigmoid)."
    )

    @model_validator(mode="after")
    def _one_width(self) -> SqueezeExcite:
        if (self.squeeze_channels is None) == (self.reduction is None):
            raise ValueError("give exactly one of squeeze_channels and reduction")
        return self

    def expand(self, expander: Expander, path: tuple[Any, ...], name: str, prev: str | None) -> str:
        from cnnspec.layers.reshape import Multiply

        x = prev
        pooled = expander.add_node(f"{name}.avgpool", SqueezePool(output_size=1), [x], path, scope=None)
        fc1 = SqueezeConv(width=self.squeeze_channels, reduction=self.reduction or 1)
        out = expander.add_node(f"{name}.fc1", fc1, [pooled, x], path, scope=None)
        out = expander.add_node(f"{name}.activation", REGISTRY[self.activation](), [out], path, scope=None)
        out = expander.add_node(f"{name}.fc2", SqueezeConv(reduction=1), [out, x], path, scope=None)
        out = expander.add_node(f"{name}.scale_activation", REGISTRY[self.gate](), [out], path, scope=None)
        return expander.add_node(f"{name}.multiply", Multiply(), [out, x], path, scope=None)


class SqueezePool(AdaptiveAvgPool2d):
    """A squeeze-excite's global pooling, whose shape error names the squeeze_excite the user wrote."""

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        if len(self.single(inputs)) != 3:
            raise ShapeProblem(
                f"squeeze_excite expects an image (C×H×W) but its input is a vector of {inputs[0][0]} features",
                hint="put it before `flatten`/`linear`, or drop it",
            )
        return super().output_shape(inputs)


class SqueezeConv(LayerKind):
    """A squeeze-excite fc: a 1×1 conv (with bias) on C_in×1×1 whose width comes from the SE's input.

    Its second input, the SE's input, is only read for its channels C: the width is `width` when given,
    else max(1, C // reduction) (fc2: reduction 1, back to C). Not registered: users write squeeze_excite.
    """

    kind: ClassVar[str] = "squeeze_conv"
    many_inputs: ClassVar[bool] = True
    width: PositiveInt | None = None
    reduction: PositiveInt = 1

    def _width(self, inputs: Sequence[Shape]) -> int:
        return self.width if self.width is not None else max(1, inputs[1][0] // self.reduction)

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        return (self._width(inputs), 1, 1)  # SqueezePool has refused a vector

    def params(self, inputs: Sequence[Shape]) -> int:
        return (inputs[0][0] + 1) * self._width(inputs)

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        return inputs[0][0] * output[0]

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        width = self._width(inputs)
        return {"weight": (width, inputs[0][0], 1, 1), "bias": (width,)}

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.builder.modules import SqueezeConv as SqueezeConvModule

        return SqueezeConvModule(inputs[0][0], self._width(inputs))
