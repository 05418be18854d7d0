"""Augmentations that mix images and their labels across a batch (torchvision.transforms.v2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import Field

from cnnspec.augments.base import AugmentKind, register

if TYPE_CHECKING:
    from torch import nn

# torchvision draws the mixing weight from Beta(alpha, alpha) in float32: an alpha that rounds to 0
# there (1e-300) is refused by torch mid-training, and one that rounds to inf gives NaN images. Below
# 0.001 the weight is 0 or 1 (no mixing) all but always; above 1000 it is 0.5 all but always.
Alpha = Annotated[float, Field(ge=1e-3, le=1e3)]


@register
class MixUp(AugmentKind):
    """Blend pairs of images and their labels (torchvision.transforms.v2.MixUp), per batch."""

    kind: ClassVar[str] = "mixup"
    mixes_labels: ClassVar[bool] = True
    alpha: Alpha = Field(0.2, description="Beta(alpha, alpha) mixing parameter.")

    def mixer(self, num_classes: int) -> nn.Module:
        from torchvision.transforms import v2

        return v2.MixUp(alpha=self.alpha, num_classes=num_classes)


@register
class CutMix(AugmentKind):
    """Paste a patch of one image into another, mixing labels by area (torchvision.transforms.v2.CutMix)."""

    kind: ClassVar[str] = "cutmix"
    mixes_labels: ClassVar[bool] = True
    alpha: Alpha = Field(1.0, description="Beta(alpha, alpha) mixing parameter.")

    def mixer(self, num_classes: int) -> nn.Module:
        from torchvision.transforms import v2

        return v2.CutMix(alpha=self.alpha, num_classes=num_classes)
