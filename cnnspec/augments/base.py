"""An augmentation is one class: its fields, the image size it gives, and its batch operations.

`@register` adds a class to the registry (`AUGMENT_KINDS`, cnnspec.spec.dispatch) under its YAML
name; `data.augment` (`AugmentItem`) is a discriminated union built from that registry, so adding
an augmentation means adding one class. The static side (fields, `output_size`, `size_problem`)
is pure Python, so `validate` checks the data pipeline's image size without torch; the batch
operations import their torch kernels (cnnspec.training.augment) inside, as a layer kind's `build`
imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ClassVar

from cnnspec.layers.base import ShapeProblem
from cnnspec.spec.dispatch import Kind, KindItem, KindRegistry, OneKeyItem

if TYPE_CHECKING:
    import torch
    from torch import nn

    from cnnspec.preprocess import EvaluationFit

    ImageOp = Callable[[torch.Tensor], torch.Tensor]  # (N, C, H, W) images → images

ImageSize = tuple[int, int]
"""(H, W) in pixels."""


class AugmentKind(Kind):
    """Base of every augmentation. Subclasses set `kind` and implement their operations."""

    # Only moves or copies pixels (crops, flips): exact on uint8, so while only such operations
    # have run, the batch stays uint8 (a quarter of the bytes).
    moves_pixels: ClassVar[bool] = False
    # Mixes images and labels across the batch (mixup, cutmix): `mixer` gives the operation, which
    # runs after every per-image operation and normalisation.
    mixes_labels: ClassVar[bool] = False
    # The field that sets the image size (random_crop's `size`): where `validate` points when the
    # pipeline's size is not the model's input. None: the augmentation keeps the size.
    size_field: ClassVar[str | None] = None

    # --- static rules (pure Python, no torch) ---------------------------------
    def output_size(self, size: ImageSize) -> ImageSize:
        """The (H, W) of the images this gives for (H, W) input images."""
        return size

    def working_size(self, size: ImageSize) -> ImageSize:
        """The (H, W) of the largest image this holds while working on (H, W) input images (random_crop:
        the padded image it cuts from), beside its output; the memory estimate counts both."""
        return size

    def size_problem(self, size: ImageSize) -> ShapeProblem | None:
        """Why (H, W) input images do not fit, or None. Returned, not raised: the steps after
        this one are still checked, from `output_size`."""
        return None

    # --- torch ----------------------------------------------------------------
    def image_op(self, fill: torch.Tensor) -> ImageOp:
        """The batch operation: random parameters per image, drawn from torch's global RNG.

        It gets uint8 images when it and every operation before it `moves_pixels`, else float
        images in [0, 1]. `fill` is the dataset's per-channel mean on that scale (cutout's fill)."""
        raise NotImplementedError(f"no batch augmentation for {self.kind}")

    def fused_op(self, after: AugmentKind) -> ImageOp | None:
        """This operation and the next one as one, where that is cheaper (crop + flip: one gather); else None."""
        return None

    def evaluation_fit(self) -> EvaluationFit | None:
        """What evaluation does in this one's place, without randomness: a size-changing
        augmentation's plain counterpart (centre crop, resize), carried out by
        `cnnspec.preprocess` for evaluation and serving alike; None: nothing."""
        return None

    def mixer(self, num_classes: int) -> nn.Module:
        """For a kind that `mixes_labels`: the module that mixes a batch of (images, labels)."""
        raise NotImplementedError(f"{self.kind} mixes no labels")


class AugmentItemBase(KindItem):
    """One augmentation step; `.op` is its settings, `.name` its kind."""

    @property
    def name(self) -> str:
        return self.kind_name

    @property
    def op(self) -> AugmentKind:
        return self.value  # type: ignore[return-value]


AUGMENT_KINDS: KindRegistry[AugmentKind] = KindRegistry(
    AugmentItemBase,
    AugmentKind,
    suffix="Augment",
    what="augmentation",
    error_type="augment_kind",
    shape_message="an augmentation is `- NAME: {PARAMS}` or a bare `- NAME`",
    definition="AugmentItem",
)
AUGMENTS = AUGMENT_KINDS.classes
register = AUGMENT_KINDS.register  # class decorator: `@register class Cutout(AugmentKind): ...`

AugmentItem = Annotated[AugmentItemBase, OneKeyItem(AUGMENT_KINDS)]
