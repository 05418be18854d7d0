"""Every augmentation of `data.augment`, registered on import."""

# Registered in this order, which is the order the schema and the reference docs list them in.
# isort: off
from cnnspec.augments import geometry, pixels, mixing  # noqa: F401

# isort: on
from cnnspec.augments.base import (
    AUGMENT_KINDS,
    AUGMENTS,
    AugmentItem,
    AugmentItemBase,
    AugmentKind,
    ImageSize,
    register,
)

__all__ = ["AUGMENTS", "AUGMENT_KINDS", "AugmentItem", "AugmentItemBase", "AugmentKind", "ImageSize", "register"]
