"""Every registered augmentation class against its own torch operations: the static size rule that
`validate` uses is the size its batch and evaluation operations give, and a kind that says it only
moves pixels gives uint8 images made of its input's pixels."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cnnspec.augments import AUGMENTS, AugmentKind
from cnnspec.preprocess import prepare_batch

# Settings for each kind; every registered kind needs an entry (checked below).
EXAMPLES: dict[str, dict[str, Any]] = {
    "random_crop": {"size": [7, 5], "padding": 0},
    "horizontal_flip": {"p": 0.5},
    "vertical_flip": {"p": 0.5},
    "random_resized_crop": {"size": [6, 9]},
    "color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1},
    "random_grayscale": {"p": 0.5},
    "cutout": {"size": 4},
    "mixup": {"alpha": 0.4},
    "cutmix": {"alpha": 1.0},
}
SIZE = (12, 10)  # (H, W) of the input batch


def _batch() -> torch.Tensor:
    return (torch.rand((8, 3, *SIZE), generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)


def _op(kind: str) -> AugmentKind:
    return AUGMENTS[kind].model_validate(EXAMPLES[kind])


def test_every_registered_augmentation_has_an_example() -> None:
    assert set(EXAMPLES) == set(AUGMENTS)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_the_size_rule_is_the_size_the_operations_give(kind: str) -> None:
    op = _op(kind)
    images = _batch()
    torch.manual_seed(0)
    if op.mixes_labels:
        mixed, labels = op.mixer(num_classes=4)(images.float() / 255, torch.arange(8) % 4)
        out = mixed
        assert labels.shape == (8, 4)  # class probabilities: the labels are mixed too
    else:
        x = images if op.moves_pixels else images.float() / 255
        out = op.image_op(torch.full((3,), 0.5))(x)
    assert tuple(out.shape) == (8, 3, *op.output_size(SIZE))
    fit = op.evaluation_fit()
    if fit is not None:
        evaluated = prepare_batch(images.numpy(), fit.fit, fit.size, None, None, fit.padding_mode)
        assert evaluated.shape == (8, 3, *op.output_size(SIZE))


@pytest.mark.parametrize("kind", sorted(k for k in EXAMPLES if AUGMENTS[k].moves_pixels))
def test_a_kind_that_moves_pixels_gives_uint8_images_of_input_pixels(kind: str) -> None:
    images = _batch()
    torch.manual_seed(0)
    out = _op(kind).image_op(torch.zeros(3))(images)
    assert out.dtype == torch.uint8
    for before, after in zip(images, out, strict=True):
        # Each output pixel (its C values together) is a pixel of the same input image.
        pixels = {tuple(p) for p in before.flatten(1).T.tolist()}
        assert all(tuple(p) in pixels for p in after.flatten(1).T.tolist())
