"""Batched augmentation: each op against its definition (and torchvision where it has a batch form)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from cnnspec.augments.geometry import HorizontalFlip, RandomCrop, RandomResizedCrop
from cnnspec.augments.mixing import CutMix, MixUp
from cnnspec.augments.pixels import ColorJitter
from cnnspec.training.augment import (
    BatchAugment,
    _hsv_to_rgb,
    _rgb_to_hsv,
    color_jitter,
    cutout,
    flip,
    random_crop,
    random_grayscale,
    random_resized_crop,
)


def _images(n: int = 16, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_random_crop_returns_a_window_of_the_padded_image(mode: str) -> None:
    x = _images()
    torch.manual_seed(1)
    out = random_crop(x, (8, 7), padding=2, padding_mode=mode)
    assert out.shape == (16, 3, 8, 7)
    padded = F.pad(x, (2, 2, 2, 2), mode={"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode])
    offsets = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(padded.shape[2] - 8 + 1)
            for dx in range(padded.shape[3] - 7 + 1)
            if torch.equal(padded[i, :, dy : dy + 8, dx : dx + 7], out[i])
        ]
        assert matches, f"image {i} is not a window of its padded input"
        offsets.add(matches[0])
    assert len(offsets) > 1  # offsets are drawn per image


def test_random_crop_works_on_uint8() -> None:
    x = (torch.arange(2 * 1 * 4 * 4) % 256).to(torch.uint8).view(2, 1, 4, 4)
    assert random_crop(x, (4, 4)).equal(x)  # crop of the full size, no padding: unchanged


def test_flip_probability_one_and_zero() -> None:
    x = _images()
    assert flip(x, 1.0, 3).equal(x.flip(3))
    assert flip(x, 1.0, 2).equal(x.flip(2))
    assert flip(x, 0.0, 3).equal(x)
    torch.manual_seed(0)
    half = flip(x, 0.5, 3)
    flipped = [bool(half[i].equal(x[i].flip(2))) for i in range(len(x))]
    assert any(flipped) and not all(flipped)


def test_random_resized_crop_of_the_whole_image_is_the_identity() -> None:
    x = _images(h=9, w=9)
    out = random_resized_crop(x, (9, 9), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_random_resized_crop_size_and_range() -> None:
    x = _images(h=32, w=24)
    out = random_resized_crop(x, (16, 20), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    assert out.shape == (16, 3, 16, 20)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_random_resized_crop_matches_a_crop_and_resize() -> None:
    # A 2× upscale of a 4×4 window equals torchvision's bilinear resize of that crop away from the
    # crop's border (at the border grid_sample reads the real neighbours where torchvision clamps).
    x = _images(n=1, h=8, w=8)
    torch.manual_seed(0)
    out = random_resized_crop(x, (8, 8), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    expected = [
        TF.resize(x[:, :, top : top + 4, left : left + 4], [8, 8], antialias=False)
        for top in range(5)
        for left in range(5)
    ]
    inner = (slice(None), slice(None), slice(1, 7), slice(1, 7))
    assert min(float((out[inner] - e[inner]).abs().max()) for e in expected) < 1e-5


def test_hsv_round_trip_and_hue_shift_match_torchvision() -> None:
    x = _images()
    torch.testing.assert_close(_hsv_to_rgb(_rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    hsv = _rgb_to_hsv(x)
    shifted = _hsv_to_rgb(torch.cat(((hsv[:, 0:1] + 0.1) % 1.0, hsv[:, 1:]), dim=1))
    torch.testing.assert_close(shifted, TF.adjust_hue(x, 0.1), atol=1e-4, rtol=0)


def test_color_jitter_zero_is_identity_and_brightness_scales() -> None:
    x = _images()
    assert color_jitter(x, ColorJitter()).equal(x)
    torch.manual_seed(0)
    out = color_jitter(x * 0.5, ColorJitter(brightness=0.4))
    ratio = out / (x * 0.5)
    per_image = ratio.flatten(1)
    assert torch.allclose(per_image.min(1).values, per_image.max(1).values, atol=1e-4)  # one factor per image
    assert float(per_image.min()) >= 0.6 - 1e-6 and float(per_image.max()) <= 1.4 + 1e-6
    assert per_image[:, 0].unique().numel() > 1


def test_color_jitter_leaves_grey_images_grey() -> None:
    x = _images(c=1)
    out = color_jitter(x, ColorJitter(saturation=0.5, hue=0.3))
    assert out.equal(x)


def test_random_grayscale() -> None:
    x = _images()
    out = random_grayscale(x, 1.0)
    torch.testing.assert_close(out, TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-6, rtol=0)
    assert random_grayscale(x, 0.0).equal(x)


def test_cutout_fills_one_clipped_square_per_image() -> None:
    x = _images(h=16, w=16) + 1.0  # every pixel ≥ 1, so filled pixels (0) are easy to count
    out = cutout(x, 6, 1.0, torch.zeros(3))
    filled = (out == 0).all(dim=1)  # (N, H, W)
    for i in range(len(x)):
        rows = filled[i].any(dim=1).nonzero().flatten()
        cols = filled[i].any(dim=0).nonzero().flatten()
        assert 3 <= len(rows) <= 6 and 3 <= len(cols) <= 6
        assert int(filled[i].sum()) == len(rows) * len(cols)  # a rectangle
    assert cutout(x, 6, 0.0, torch.zeros(3)).equal(x)


def test_batch_augment_normalises_and_is_reproducible() -> None:
    images = (torch.rand(32, 3, 10, 10, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    labels = torch.arange(32) % 4
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    aug = BatchAugment(
        [RandomCrop(size=10, padding=2), HorizontalFlip()],
        channels=3,
        mean=mean,
        std=std,
        num_classes=4,
        device=torch.device("cpu"),
    )
    plain = aug.normalize(images)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(plain, expected)
    torch.manual_seed(5)
    a, la = aug(images, labels)
    torch.manual_seed(5)
    b, lb = aug(images, labels)
    assert a.equal(b) and la.equal(labels) and lb.equal(labels)
    assert not a.equal(plain)


@pytest.mark.parametrize("mixer", [MixUp(alpha=0.4), CutMix(alpha=1.0)], ids=["mixup", "cutmix"])
def test_mixed_labels_are_the_proportions_of_the_mixed_pixels(mixer: MixUp | CutMix) -> None:
    # Image k is flat grey at value 40·k with label k: whatever two images a mixer blends (mixup) or
    # pastes (cutmix), an image's mean pixel is Σ_k y[k]·40k/255 exactly when its labels are the
    # proportions of each source image in it.
    labels = torch.arange(6)
    values = 40.0 * labels
    images = values.view(6, 1, 1, 1).expand(6, 3, 8, 8).to(torch.uint8)
    aug = BatchAugment([mixer], channels=3, mean=None, std=None, num_classes=6, device=torch.device("cpu"))
    torch.manual_seed(0)
    mixed = 0
    for _ in range(8):
        x, y = aug(images, labels)
        assert x.shape == (6, 3, 8, 8) and y.shape == (6, 6)
        torch.testing.assert_close(y.sum(dim=1), torch.ones(6))
        torch.testing.assert_close(x.mean(dim=(1, 2, 3)), y @ values / 255)
        mixed += int((y.max(dim=1).values < 1).sum())
    assert mixed > 0  # some images really were mixed


def test_strong_recipe_runs_on_grey_and_colour() -> None:
    ops = [
        RandomResizedCrop(size=8, scale=[0.6, 1.0]),
        ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
    ]
    for c in (1, 3):
        aug = BatchAugment(ops, channels=c, mean=[0.5] * c, std=[0.5] * c, num_classes=3, device=torch.device("cpu"))
        x, _ = aug((torch.rand(8, c, 12, 12) * 255).to(torch.uint8), torch.zeros(8, dtype=torch.long))
        assert x.shape == (8, c, 8, 8)
        assert torch.isfinite(x).all()


def _is_window(padded: torch.Tensor, out: torch.Tensor) -> bool:
    th, tw = out.shape[-2:]
    return any(
        torch.equal(padded[:, dy : dy + th, dx : dx + tw], out)
        for dy in range(padded.shape[1] - th + 1)
        for dx in range(padded.shape[2] - tw + 1)
    )


def test_crop_and_flip_in_one_gather_on_uint8() -> None:
    # The seed's recipe (crop with padding, then flip) runs fused on the uint8 batch.
    images = (torch.rand(24, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    aug = BatchAugment(
        [RandomCrop(size=8, padding=2), HorizontalFlip(p=0.5)],
        channels=3,
        mean=None,
        std=None,
        num_classes=2,
        device=torch.device("cpu"),
    )
    assert len(aug.pixel_ops) == 1 and not aug.ops
    torch.manual_seed(0)
    x, _ = aug(images, torch.zeros(24, dtype=torch.long))
    restored = (x * 255).round().to(torch.uint8)
    padded = F.pad(images, (2, 2, 2, 2))
    kinds = []
    for i in range(24):
        plain, mirrored = _is_window(padded[i], restored[i]), _is_window(padded[i], restored[i].flip(2))
        assert plain or mirrored
        kinds.append(mirrored and not plain)
    assert any(kinds) and not all(kinds)


def test_evaluation_uses_a_centre_crop_or_resize_to_the_training_size() -> None:
    images = (torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    cpu = torch.device("cpu")
    crop = BatchAugment([RandomCrop(size=8)], channels=3, mean=None, std=None, num_classes=2, device=cpu)
    torch.testing.assert_close(crop.normalize(images), images[:, :, 2:10, 2:10].float() / 255)
    rrc = BatchAugment(
        [RandomResizedCrop(size=6)], channels=3, mean=[0.5] * 3, std=[0.5] * 3, num_classes=2, device=cpu
    )
    expected = (TF.resize(images.float() / 255, [6, 6], antialias=True) - 0.5) / 0.5
    torch.testing.assert_close(rrc.normalize(images), expected, atol=1e-5, rtol=0)
    same = BatchAugment([RandomCrop(size=12, padding=2)], channels=3, mean=None, std=None, num_classes=2, device=cpu)
    assert same.normalize(images).shape == (4, 3, 12, 12)
