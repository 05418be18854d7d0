"""A layer kind is one class: its fields, shape rule, counts, receptive-field step and builder.

`@register` adds a class to the registry (`LAYER_KINDS`, cnnspec.spec.dispatch) under its YAML
name; the spec's layer list (`LayerItem`) is a discriminated union built from that registry, so
adding a layer kind means adding one class. `LayerItem` lives here, beside the registry, so that
the sugar kinds (whose fields are lists of layers) import it like any other name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, WithJsonSchema, field_validator

from cnnspec.spec.dispatch import Kind, KindItem, KindRegistry, OneKeyItem

if TYPE_CHECKING:
    from torch import nn

    from cnnspec.checker.expand import Expander

Shape = tuple[int, ...]
"""A per-sample tensor shape without the batch axis: (C, H, W) for images, (F,) for vectors."""

# Letters, digits, '_' and '-' (torchvision's RegNet names blocks `block1-0`), not starting with '-'.
ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"
# `id: self`: the layer takes the name of the list it is in (see cnnspec.checker.expand).
SELF_ID = "self"
# An id written as a whole number (`id: 0`, `id: ${i + 1}`) is that number's text: nn.Sequential's names.
_ID_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": ID_PATTERN, "maxLength": 64},
        {"type": "integer", "minimum": 0},
        {"type": "null"},
    ],
    "default": None,
}


# The largest float32; a layer's value beyond it cannot be held by a float32 module (torch says "value
# cannot be converted to type float without overflow" only when the module is built, or trains on inf).
FLOAT32_MAX = 3.4028234663852886e38


def _within_float32(value: float) -> float:
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError("must be a finite number within float32's range, ±3.4028235e+38 (torch holds it as float32)")
    return value


Float32 = Annotated[float, AfterValidator(_within_float32)]
"""A layer's float setting (an initial value, a bound, a sharpness): a number that float32 can hold, so a
spec that validates also builds. Every float field of a layer kind is one (or a narrower range)."""


def _id_text(value: Any) -> Any:
    """A whole number ≥ 0 given as an id or an input name becomes its text (`0` → "0")."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return value


class ShapeProblem(Exception):
    """Raised by a shape rule; the checker turns it into a located diagnostic."""

    def __init__(self, message: str, *, notes: Sequence[str] = (), hint: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.notes = tuple(notes)
        self.hint = hint
        self.field = field


def require_groups_divide(channels: int, groups: int, what: str, field: str) -> None:
    """A ShapeProblem at `field` unless `groups` divides the channels (group norm, channel shuffle)."""
    if channels % groups:
        raise ShapeProblem(
            f"{what}={groups} does not divide the {channels} channels",
            hint="use a number of groups that divides the channels",
            field=field,
        )


@dataclass(frozen=True)
class Window:
    """How a layer moves the receptive field: an effective kernel and a stride per spatial axis.

    `global_` means every output sees the whole input (adaptive/global pooling, flatten).
    A stride below 1 (upsampling) is written as a fraction.
    """

    kernel: tuple[int, int] = (1, 1)
    stride: tuple[float, float] = (1.0, 1.0)
    global_: bool = False


class LayerKind(Kind):
    """Base of every layer kind. Subclasses set `kind` and implement the rules."""

    FIELD_ROLES: ClassVar[dict[str, str]] = {"id": "the layer's name", "inputs": "the ids of the layers it reads"}
    many_inputs: ClassVar[bool] = False
    # Sugar kinds (residual, repeat, block) expand into other layers before checking.
    sugar: ClassVar[bool] = False
    # How many leading inputs the layer reads values from; the others only lend their shape (a
    # residual's shortcut reads the body's output to know what to match). None: all of them.
    value_inputs: ClassVar[int | None] = None
    # True when `macs` is an estimate rather than an exact count; summaries mark such figures with "≈".
    macs_estimated: ClassVar[bool] = False
    # The names of the tensors a kind's module holds as its own attributes (scale: layer_scale). A kind
    # that lists some may take `id: self`: its module is then the module of the list it is in, and those
    # names are refused to the list's other layers. Its module must have no other attributes a child
    # could clash with.
    self_names: ClassVar[frozenset[str]] = frozenset()
    # Slides a kernel window over the feature map (convolutions, windowed pooling): a stage of the
    # summary's receptive-field plot.
    slides_window: ClassVar[bool] = False

    id: Annotated[str | None, WithJsonSchema(_ID_SCHEMA)] = Field(
        None,
        description="Name of this layer: other layers refer to it in `inputs`; "
        "it names the module in state_dict and ONNX. Letters, digits, '_' and '-'; a whole number "
        "(`0`) is its text, as nn.Sequential names; 'self' takes the name of the enclosing list.",
        pattern=ID_PATTERN,
        max_length=64,
    )
    inputs: list[str] | None = Field(
        None,
        description="Ids of the layers this one reads; default: the previous layer. "
        "Merge kinds (add, concat) take several.",
        min_length=1,
    )

    @field_validator("id", mode="before")
    @classmethod
    def _id_number(cls, value: Any) -> Any:
        return _id_text(value)

    @field_validator("inputs", mode="before")
    @classmethod
    def _input_numbers(cls, value: Any) -> Any:
        return [_id_text(v) for v in value] if isinstance(value, list) else value

    @classmethod
    def may_be_bare(cls) -> bool:
        """`- relu` alone is a layer when every parameter has a default; a merge kind needs `inputs`."""
        return not cls.many_inputs and super().may_be_bare()

    # --- static rules (pure Python, no torch) ---------------------------------
    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        """The output shape for the given input shapes; raise ShapeProblem when they do not fit."""
        return self.single(inputs)

    def params(self, inputs: Sequence[Shape]) -> int:
        """Number of learnable parameters."""
        return 0

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        """Multiply-accumulates per sample (convolutions and matrix products only)."""
        return 0

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        """The receptive-field step of this layer."""
        return Window()

    def trainable(self) -> bool:
        """Whether this layer's parameters are trained (frozen backbones are not)."""
        return True

    def batchnorm_map(self, inputs: Sequence[Shape], output: Shape) -> tuple[int, ...] | None:
        """The smallest map a batch norm inside this layer normalises, per image and channel: (H, W) of
        an image, () for a vector; None when the layer holds no batch norm.

        Training batch norm needs more than one value per channel over the batch (torch refuses one),
        so a batch of one image through a 1×1 map is refused before training (cnnspec.checker.data).
        """
        return None

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape] | None:
        """The built module's state_dict entries (parameters and buffers) by local name and shape.

        Computed statically (no torch) so `cnnspec diff` can tell which checkpoint tensors still
        fit; None when a kind cannot know them without building the module.
        """
        return {} if self.params(inputs) == 0 else None

    def inner_layers(self) -> dict[str, object] | None:
        """The layer written as cnnspec layers (a spec's `model` section without `input`: `layers`, and
        `blocks` when they use some), for `summary --depth` to show it layer by layer; None when it has
        no parts worth showing or they are not known without building it."""
        return None

    def at_copy(self, index: int, count: int) -> LayerKind:
        """This layer as copy `index` of `count` made by the innermost `repeat` around it.

        Layers are the same in every copy, so the default returns self; a kind whose value ramps across
        the copies (drop_path's `p: {start, end}`) returns the copy's own layer.
        """
        return self

    def with_files(self, resolve: Callable[[str], str]) -> LayerKind:
        """This layer with every field that names a file passed through `resolve` (cnnspec.spec.paths:
        a relative path made absolute against the spec file's folder). The default names no file."""
        return self

    # --- torch ----------------------------------------------------------------
    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        """The torch module for this layer (torch is imported inside)."""
        raise NotImplementedError(f"{self.kind} has no torch builder")

    # --- sugar ----------------------------------------------------------------
    def expand(self, expander: Expander, path: tuple[Any, ...], name: str, prev: str | None) -> str:
        """Sugar kinds add their layers to `expander` and return the id of their output."""
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------
    def single(self, inputs: Sequence[Shape]) -> Shape:
        if len(inputs) != 1:
            raise ShapeProblem(f"{self.kind} takes one input, got {len(inputs)}", field="inputs")
        return inputs[0]

    def image(self, inputs: Sequence[Shape]) -> tuple[int, int, int]:
        shape = self.single(inputs)
        if len(shape) != 3:
            raise ShapeProblem(
                f"{self.kind} expects an image (C×H×W) but its input is a vector of {shape[0]} features",
                hint="put it before `flatten`/`linear`, or drop it",
            )
        return shape[0], shape[1], shape[2]

    def vector(self, inputs: Sequence[Shape]) -> int:
        shape = self.single(inputs)
        if len(shape) != 1:
            raise ShapeProblem(
                f"{self.kind} expects a vector but its input is {fmt_shape(shape)}",
                hint="add `flatten` (or `global_avgpool`) before it",
            )
        return shape[0]


class LayerItemBase(KindItem):
    """One entry of a layer list; `.layer` is the layer kind instance."""

    @property
    def layer(self) -> LayerKind:
        return self.value  # type: ignore[return-value]


LAYER_KINDS: KindRegistry[LayerKind] = KindRegistry(
    LayerItemBase,
    LayerKind,
    suffix="Layer",
    what="layer kind",
    error_type="layer_kind",
    shape_message="a layer is `- KIND: {PARAMS}` or a bare `- KIND`",
    definition="LayerItem",
)
REGISTRY = LAYER_KINDS.classes
register = LAYER_KINDS.register  # class decorator: `@register class Conv2d(LayerKind): ...`

LayerItem = Annotated[LayerItemBase, OneKeyItem(LAYER_KINDS)]


def fmt_shape(shape: Shape) -> str:
    return "×".join(str(s) for s in shape)


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))
