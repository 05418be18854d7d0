"""Augmentations that move pixels or change the image size: crops and flips."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from cnnspec.augments.base import AugmentKind, ImageSize, register
from cnnspec.layers.base import ShapeProblem, pair
from cnnspec.spec.base import Fraction, Size

# More padding than this on each side is no augmentation (the crop would be mostly padding), and
# the padded batch it is cut from grows with its square.
MAX_PADDING = 1024

if TYPE_CHECKING:
    import torch

    from cnnspec.augments.base import ImageOp
    from cnnspec.preprocess import EvaluationFit


@register
class RandomCrop(AugmentKind):
    """Pad, then crop a random size×size window (torchvision RandomCrop)."""

    kind: ClassVar[str] = "random_crop"
    moves_pixels: ClassVar[bool] = True
    size_field: ClassVar[str | None] = "size"
    size: Size = Field(description="Crop size: n or [H, W].")
    padding: Annotated[int, Field(ge=0, le=MAX_PADDING)] = Field(
        0, description="Pixels of padding on each side before cropping."
    )
    padding_mode: Literal["constant", "reflect", "edge"] = Field("constant", description="How padding is filled.")

    def output_size(self, size: ImageSize) -> ImageSize:
        return pair(self.size)

    def working_size(self, size: ImageSize) -> ImageSize:
        return (size[0] + 2 * self.padding, size[1] + 2 * self.padding)  # the padded batch the crop is cut from

    def size_problem(self, size: ImageSize) -> ShapeProblem | None:
        crop = pair(self.size)
        padded = self.working_size(size)
        if self.padding_mode == "reflect" and self.padding >= min(size):
            return ShapeProblem(
                f"random_crop's reflect padding of {self.padding} needs an image wider and taller than that,"
                f" got {size[0]}×{size[1]}",
                hint=f"pad less than {min(size)}, or use padding_mode: edge or constant",
                field="padding",
            )
        if crop[0] <= padded[0] and crop[1] <= padded[1]:
            return None
        return ShapeProblem(
            f"random_crop of {crop[0]}×{crop[1]} is larger than the {padded[0]}×{padded[1]} (padded) image",
            hint="crop smaller, or pad more",
            field="size",
        )

    def image_op(self, fill: torch.Tensor) -> ImageOp:
        from cnnspec.training.augment import random_crop

        size = pair(self.size)
        return lambda x: random_crop(x, size, self.padding, self.padding_mode)

    def fused_op(self, after: AugmentKind) -> ImageOp | None:
        if not isinstance(after, HorizontalFlip):
            return None
        from cnnspec.training.augment import random_crop

        size = pair(self.size)  # the usual crop + flip recipe: one gather does both
        return lambda x: random_crop(x, size, self.padding, self.padding_mode, flip_p=after.p)

    def evaluation_fit(self) -> EvaluationFit:
        from cnnspec.preprocess import EvaluationFit

        return EvaluationFit("center_crop", pair(self.size), self.padding_mode)  # torchvision's CenterCrop


class _Flip(AugmentKind):
    moves_pixels: ClassVar[bool] = True
    axis: ClassVar[int]  # of an (N, C, H, W) batch
    p: Fraction = Field(0.5, description="Probability of flipping.")

    def image_op(self, fill: torch.Tensor) -> ImageOp:
        from cnnspec.training.augment import flip

        return lambda x: flip(x, self.p, self.axis)


@register
class HorizontalFlip(_Flip):
    """Flip left-right with probability p."""

    kind: ClassVar[str] = "horizontal_flip"
    axis: ClassVar[int] = 3


@register
class VerticalFlip(_Flip):
    """Flip top-bottom with probability p."""

    kind: ClassVar[str] = "vertical_flip"
    axis: ClassVar[int] = 2


@register
class RandomResizedCrop(AugmentKind):
    """Crop a random area and aspect ratio, resize to size (torchvision RandomResizedCrop)."""

    kind: ClassVar[str] = "random_resized_crop"
    size_field: ClassVar[str | None] = "size"
    size: Size = Field(description="Output size: n or [H, W].")
    scale: Annotated[list[Fraction], Field(min_length=2, max_length=2)] = Field(
        [0.08, 1.0], description="Range of the cropped area as a fraction of the image."
    )
    ratio: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] = Field(
        [3 / 4, 4 / 3], description="Range of aspect ratios."
    )

    def output_size(self, size: ImageSize) -> ImageSize:
        return pair(self.size)

    def image_op(self, fill: torch.Tensor) -> ImageOp:
        from cnnspec.training.augment import random_resized_crop

        size = pair(self.size)
        return lambda x: random_resized_crop(x, size, self.scale, self.ratio)

    def evaluation_fit(self) -> EvaluationFit:
        from cnnspec.preprocess import EvaluationFit

        return EvaluationFit("resize", pair(self.size))  # torchvision's Resize at test time
