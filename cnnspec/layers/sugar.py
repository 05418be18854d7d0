"""Sugar kinds that expand into other layers: residual, repeat and named blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from cnnspec.layers.base import LayerKind, Shape, ShapeProblem, Window, fmt_shape, register

if TYPE_CHECKING:
    from torch import nn

    from cnnspec.check.expand import Expander
    from cnnspec.spec.layers import LayerItem


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
    activation: Literal["relu", "gelu", "silu", "leaky_relu"] | None = Field(
        None, description="Activation applied after the sum (ResNet uses relu)."
    )

    def expand(self, expander: Expander, path: tuple[Any, ...], name: str, prev: str | None) -> str:
        from cnnspec.layers.elementwise import GELU, LeakyReLU, ReLU, SiLU
        from cnnspec.layers.reshape import Add

        scope = expander.child_scope(name)
        body_out = expander.expand_list(self.body, (*path, "body"), scope, prev)
        if self.shortcut == "identity":
            short_out = prev
        elif self.shortcut == "auto":
            short_out = expander.add_node(f"{name}.downsample", Projection(), [prev, body_out], path, scope=None)
        else:
            short_out = expander.expand_list(
                self.shortcut, (*path, "shortcut"), expander.child_scope(f"{name}.shortcut"), prev
            )
        out = expander.add_node(f"{name}.add", Add(), [body_out, short_out], path, scope=None)
        if self.activation:
            act = {"relu": ReLU, "gelu": GELU, "silu": SiLU, "leaky_relu": LeakyReLU}[self.activation]()
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

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        from cnnspec.layers.dense import batchnorm_tensors

        if self._stride(inputs[0], inputs[1]) is None:
            return {}
        c_in, c_out = inputs[0][0], inputs[1][0]  # Shortcut(conv, bn) is a Sequential: entries 0 and 1
        return {"0.weight": (c_out, c_in, 1, 1)} | batchnorm_tensors(c_out, prefix="1.")

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from torch import nn

        from cnnspec.build.modules import Shortcut

        stride = self._stride(inputs[0], inputs[1])
        if stride is None:
            return Shortcut()
        return Shortcut(
            nn.Conv2d(inputs[0][0], inputs[1][0], 1, stride=stride, bias=False), nn.BatchNorm2d(inputs[1][0])
        )


@register
class Repeat(LayerKind):
    """n copies of a list of layers, each with its own weights; copies are named ID.0, ID.1, …"""

    kind: ClassVar[str] = "repeat"
    sugar: ClassVar[bool] = True
    n: Annotated[int, Field(ge=1, le=10_000)] = Field(description="Number of copies.")
    layers: list[LayerItem] = Field(description="The layers to repeat.", min_length=1)

    def expand(self, expander: Expander, path: tuple[Any, ...], name: str, prev: str | None) -> str:
        out = prev
        single = len(self.layers) == 1 and self.layers[0].layer.id is None
        for i in range(self.n):
            copy = f"{name}.{i}"
            if single:
                out = expander.expand_list(
                    self.layers, (*path, "layers"), expander.child_scope(name), out, names=[copy]
                )
            else:
                out = expander.expand_list(self.layers, (*path, "layers"), expander.child_scope(copy), out)
        assert out is not None
        return out


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
