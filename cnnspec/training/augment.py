"""Batched augmentation on the training device: whole batches, per-image random parameters.

A batch arrives as uint8 `(N, C, H, W)`; it becomes float in [0, 1], goes through the
spec's augmentations in order (each draws its own parameters per image from torch's
global RNG, so a seed and the saved RNG state make a run reproducible), is normalised,
and finally mixup/cutmix mix images and labels across the batch
(torchvision.transforms.v2 MixUp/CutMix).

Each augmentation is a class in cnnspec/augments/ that says what it does to a batch; the torch
kernels its operations call are here, with `BatchAugment`, which chains them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from cnnspec.preprocess import EvaluationFit, evaluation_fit, prepare_batch

if TYPE_CHECKING:
    from cnnspec.augments import AugmentKind
    from cnnspec.augments.pixels import ColorJitter

ImageOp = Callable[[torch.Tensor], torch.Tensor]

_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def random_crop(
    x: torch.Tensor, size: tuple[int, int], padding: int = 0, padding_mode: str = "constant", flip_p: float = 0.0
) -> torch.Tensor:
    """Pad every image, then crop a size window at a random offset per image; with `flip_p`, also
    mirror each crop left-right with that probability (one gather does both). Works on uint8."""
    if padding:
        mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[padding_mode]
        x = F.pad(x, (padding,) * 4, mode=mode)
    n, c, h, w = x.shape
    th, tw = size
    dev = x.device
    oy = torch.randint(0, h - th + 1, (n,), device=dev)
    ox = torch.randint(0, w - tw + 1, (n,), device=dev)
    steps = torch.arange(tw, device=dev).expand(n, tw)
    if flip_p > 0:
        flipped = (torch.rand(n, device=dev) < flip_p)[:, None]
        steps = torch.where(flipped, tw - 1 - steps, steps)
    # One gather over flattened pixels: far cheaper than 4-D advanced indexing for small images.
    rows = oy[:, None] + torch.arange(th, device=dev)  # (N, th)
    cols = ox[:, None] + steps  # (N, tw)
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, th * tw).expand(n, c, th * tw)
    return x.reshape(n, c, h * w).gather(2, flat).view(n, c, th, tw)


def flip(x: torch.Tensor, p: float, dim: int) -> torch.Tensor:
    """Flip each image along `dim` (3: left-right, 2: top-bottom) with probability p."""
    mask = (torch.rand(x.shape[0], device=x.device) < p)[:, None, None, None]
    return torch.where(mask, x.flip(dim), x)


def random_resized_crop(
    x: torch.Tensor, size: tuple[int, int], scale: Sequence[float], ratio: Sequence[float], attempts: int = 10
) -> torch.Tensor:
    """torchvision's RandomResizedCrop per image: area and aspect ratio drawn like its get_params,
    the crop resampled bilinearly to `size` with one grid_sample for the whole batch."""
    n, _, h, w = x.shape
    dev = x.device
    area = float(h * w)
    target = area * _uniform(n * attempts, scale[0], scale[1], dev).view(n, attempts)
    log_r = _uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), dev).view(n, attempts)
    aspect = torch.exp(log_r)
    cw = torch.sqrt(target * aspect).round()
    ch = torch.sqrt(target / aspect).round()
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = ok.float().argmax(dim=1)  # first attempt that fits
    pick = torch.arange(n, device=dev)
    cw, ch, found = cw[pick, first], ch[pick, first], ok.any(dim=1)
    # Fallback (as torchvision): the whole image, its aspect ratio clamped into `ratio`.
    in_ratio = w / h
    if in_ratio < min(ratio):
        fw, fh = float(w), float(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = float(round(h * max(ratio))), float(h)
    else:
        fw, fh = float(w), float(h)
    cw = torch.where(found, cw, torch.full_like(cw, fw))
    ch = torch.where(found, ch, torch.full_like(ch, fh))
    top = torch.floor(torch.rand(n, device=dev) * (h - ch + 1))
    left = torch.floor(torch.rand(n, device=dev) * (w - cw + 1))
    top = torch.where(found, top, torch.floor((h - ch) / 2))
    left = torch.where(found, left, torch.floor((w - cw) / 2))
    # Map output coordinates [-1, 1] (pixel edges, align_corners=False) onto the crop box.
    theta = torch.zeros((n, 2, 3), device=dev, dtype=x.dtype)
    theta[:, 0, 0] = cw / w
    theta[:, 0, 2] = (2 * left + cw) / w - 1
    theta[:, 1, 1] = ch / h
    theta[:, 1, 2] = (2 * top + ch) / h - 1
    grid = F.affine_grid(theta, [n, x.shape[1], size[0], size[1]], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luminance (N, 1, H, W) of RGB images; grey images are returned as they are."""
    if x.shape[1] != 3:
        return x
    r, g, b = x.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] → HSV, hue in [0, 1) (ties pick red, then green, as torchvision)."""
    maxc, argmax = x.max(dim=1, keepdim=True)
    minc = x.amin(dim=1, keepdim=True)
    delta = maxc - minc
    s = delta / maxc.clamp_min(1e-12)
    d = delta.clamp_min(1e-12)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    h = torch.where(argmax == 0, (g - b) / d, torch.where(argmax == 1, 2 + (b - r) / d, 4 + (r - g) / d))
    h = torch.where(delta > 0, (h / 6) % 1, torch.zeros_like(h))
    return torch.cat((h, s, maxc), dim=1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV → RGB with the closed form c = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6."""
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    k = (torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1) + h * 6) % 6
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def color_jitter(x: torch.Tensor, op: ColorJitter) -> torch.Tensor:
    """Brightness, contrast, saturation and hue with per-image factors, in a random order per batch
    (torchvision draws the order per call too). Saturation and hue leave grey images alone."""
    n = x.shape[0]
    dev = x.device

    def factor(amount: float) -> torch.Tensor:
        return _uniform(n, max(0.0, 1 - amount), 1 + amount, dev)[:, None, None, None]

    def brightness(z: torch.Tensor) -> torch.Tensor:
        return (z * factor(op.brightness)).clamp_(0, 1)

    def contrast(z: torch.Tensor) -> torch.Tensor:
        mean = grayscale(z).mean(dim=(1, 2, 3), keepdim=True)
        f = factor(op.contrast)
        return (f * z + (1 - f) * mean).clamp_(0, 1)

    def saturation(z: torch.Tensor) -> torch.Tensor:
        f = factor(op.saturation)
        return (f * z + (1 - f) * grayscale(z)).clamp_(0, 1)

    def hue(z: torch.Tensor) -> torch.Tensor:
        shift = _uniform(n, -op.hue, op.hue, dev)[:, None, None, None]
        hsv = _rgb_to_hsv(z)
        return _hsv_to_rgb(torch.cat(((hsv[:, 0:1] + shift) % 1.0, hsv[:, 1:]), dim=1))

    steps: list[ImageOp] = []
    if op.brightness > 0:
        steps.append(brightness)
    if op.contrast > 0:
        steps.append(contrast)
    if op.saturation > 0 and x.shape[1] == 3:
        steps.append(saturation)
    if op.hue > 0 and x.shape[1] == 3:
        steps.append(hue)
    for k in torch.randperm(len(steps)).tolist():
        x = steps[k](x)
    return x


def random_grayscale(x: torch.Tensor, p: float) -> torch.Tensor:
    """Replace each RGB image by its luminance (kept 3-channel) with probability p."""
    if x.shape[1] != 3:
        return x
    mask = (torch.rand(x.shape[0], device=x.device) < p)[:, None, None, None]
    return torch.where(mask, grayscale(x).expand_as(x), x)


def cutout(x: torch.Tensor, size: int, p: float, fill: torch.Tensor) -> torch.Tensor:
    """Fill a size×size square (centre anywhere in the image, clipped at the border) with `fill`,
    per image with probability p (DeVries & Taylor, 2017). `fill` is the dataset mean, so after
    normalisation the square is 0, as in the paper."""
    n, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (n,), device=dev)[:, None, None]
    cx = torch.randint(0, w, (n,), device=dev)[:, None, None]
    apply = (torch.rand(n, device=dev) < p)[:, None, None]
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    half = size // 2
    inside = (rows >= cy - half) & (rows < cy - half + size) & (cols >= cx - half) & (cols < cx - half + size)
    mask = (inside & apply).unsqueeze(1)  # (N, 1, H, W)
    return torch.where(mask, fill.view(1, -1, 1, 1).to(x.dtype), x)


class BatchAugment:
    """The spec's augmentation list as one callable over (uint8 images, labels) batches."""

    def __init__(
        self,
        items: Sequence[AugmentKind],
        *,
        channels: int,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        num_classes: int,
        device: torch.device,
    ):
        # x/255 then (x − mean)/std, folded into one multiply-add: x·scale + shift.
        m = torch.tensor(mean if mean is not None else [0.0] * channels, device=device).view(1, -1, 1, 1)
        sd = torch.tensor(std if std is not None else [1.0] * channels, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * sd), -m / sd
        fill = m.flatten()  # cutout's fill: the mean, 0 after normalisation
        # Leading ops that only move pixels run on the uint8 batch (a quarter of the bytes);
        # the float conversion happens before the first op that computes new values.
        self.pixel_ops: list[ImageOp] = []
        self.ops: list[ImageOp] = []
        pending = [op for op in items if not op.mixes_labels]
        while pending:
            op = pending.pop(0)
            fused = op.fused_op(pending[0]) if pending else None  # with the next one, as one op
            if fused is not None:
                fn, moves_pixels = fused, op.moves_pixels and pending.pop(0).moves_pixels
            else:
                fn, moves_pixels = op.image_op(fill), op.moves_pixels
            (self.pixel_ops if not self.ops and moves_pixels else self.ops).append(fn)
        # Batch-level kinds: they mix images and labels, after every per-image op and normalisation.
        mixers = [op.mixer(num_classes) for op in items if op.mixes_labels]
        self.mix: torch.nn.Module | None = None
        if len(mixers) == 1:
            self.mix = mixers[0]
        elif mixers:
            from torchvision.transforms import v2

            # Both listed: one of them per batch, as torchvision's recipe does.
            self.mix = v2.RandomChoice(mixers)
        self.num_classes = num_classes
        self.normalized = mean is not None
        # Evaluation sees what training's last size-changing op would give, without randomness:
        # the centre crop for random_crop, a plain resize for random_resized_crop (torchvision's
        # CenterCrop / Resize at test time), through the steps predict takes (cnnspec.preprocess).
        self.evaluation = evaluation_fit(items)
        self.mean = tuple(float(v) for v in mean) if mean is not None else None
        self.std = tuple(float(v) for v in std) if std is not None else None

    def _to_float(self, images: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, images.float(), self.scale) if self.normalized else images.float().div_(255.0)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) → normalised float at the training crop size, no randomness (for evaluation).

        The crop is centred (padded as the training crop pads where it is larger than the image);
        a random_resized_crop becomes a resize of the whole image. The work is
        `cnnspec.preprocess.prepare_batch`, on the CPU: the function predict, bench and export's
        gate use, so evaluation and serving cannot disagree."""
        fit = self.evaluation or EvaluationFit("center_crop", (images.shape[-2], images.shape[-1]))
        x = prepare_batch(images.cpu().numpy(), fit.fit, fit.size, self.mean, self.std, fit.padding_mode)
        return torch.from_numpy(x).to(images.device)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a training batch; labels come back as class indices, or as (N, K)
        probabilities when mixup/cutmix is on."""
        with _one_cpu_thread(images.device):
            return self._augment(images, labels)

    def _augment(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images
        for op in self.pixel_ops:
            x = op(x)
        if self.ops:
            x = x.float().div_(255.0)
            for op in self.ops:
                x = op(x)
            if self.normalized:
                x = torch.addcmul(self.shift, x, self.scale * 255.0)
        else:
            x = self._to_float(x)
        if self.mix is not None:
            x, labels = self.mix(x, labels)
        return x, labels


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run a batch's augmentation in one CPU thread. Its kernels are small and memory-bound: a
    second thread gains little, and when the cores are shared with other processes the
    threads wait on each other and a batch takes up to 50× longer. The model keeps its threads."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
