"""Augmentations that compute new pixel values: colour changes and cutout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import Field

from cnnspec.augments.base import AugmentKind, register
from cnnspec.spec.base import Fraction, PositiveInt

if TYPE_CHECKING:
    import torch

    from cnnspec.augments.base import ImageOp


@register
class ColorJitter(AugmentKind):
    """Random brightness, contrast, saturation and hue (torchvision ColorJitter)."""

    kind: ClassVar[str] = "color_jitter"
    brightness: Annotated[float, Field(ge=0)] = Field(0.0, description="Factor drawn from [1−b, 1+b].")
    contrast: Annotated[float, Field(ge=0)] = Field(0.0, description="Factor drawn from [1−c, 1+c].")
    saturation: Annotated[float, Field(ge=0)] = Field(0.0, description="Factor drawn from [1−s, 1+s].")
    hue: Annotated[float, Field(ge=0, le=0.5)] = Field(0.0, description="Hue shift drawn from [−h, h].")

    def image_op(self, fill: torch.Tensor) -> ImageOp:
        from cnnspec.training.augment import color_jitter

        return lambda x: color_jitter(x, self)


@register
class RandomGrayscale(AugmentKind):
    """Turn an image grey with probability p."""

    kind: ClassVar[str] = "random_grayscale"
    p: Fraction = Field(0.1, description="Probability of greying.")

    def image_op(self, fill: torch.Tensor) -> ImageOp:
        from cnnspec.training.augment import random_grayscale

        return lambda x: random_grayscale(x, self.p)


@register
class Cutout(AugmentKind):
    """Zero a random size×size square (DeVries & Taylor, 2017)."""

    kind: ClassVar[str] = "cutout"
    size: PositiveInt = Field(description="Side of the square, in pixels.")
    p: Fraction = Field(1.0, description="Probability of cutting.")

    def image_op(self, fill: torch.Tensor) -> ImageOp:
        from cnnspec.training.augment import cutout

        return lambda x: cutout(x, self.size, self.p, fill)
