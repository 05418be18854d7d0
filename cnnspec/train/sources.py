"""Where batches come from: a uint8 tensor on the device, or a folder streamed by a DataLoader.

Both kinds hand out uint8 batches `(N, C, H, W)` already on the training device, in an
order the trainer chooses (so the order is reproducible and resumable mid-epoch).
Augmentation and normalisation happen afterwards, per batch, on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from cnnspec.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]  # (N, C, H, W) uint8, (N,) int64


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled indices of epoch `epoch` (1-based): a pure function of (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class Source(Protocol):
    """A split of a dataset that yields uint8 batches on a device."""

    def __len__(self) -> int: ...

    def batches(
        self, order: torch.Tensor | None, batch_size: int, device: torch.device, start: int = 0
    ) -> Iterator[Batch]:
        """Batches of `order` (indices; None = 0..N-1), skipping the first `start` batches."""
        ...

    def sample(self, index: int) -> tuple[torch.Tensor, int]:
        """One image (C, H, W) uint8 on the CPU and its label."""
        ...


def _chunks(order: torch.Tensor, batch_size: int, start: int) -> Iterator[torch.Tensor]:
    for begin in range(start * batch_size, len(order), batch_size):
        yield order[begin : begin + batch_size]


@dataclass
class TensorSource:
    """A split held as one uint8 tensor; move it to the training device once with `.to()`."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> TensorSource:
        return TensorSource(self.images.to(device), self.labels.to(device))

    def batches(
        self, order: torch.Tensor | None, batch_size: int, device: torch.device, start: int = 0
    ) -> Iterator[Batch]:
        if order is None:
            for begin in range(start * batch_size, len(self), batch_size):
                yield (
                    self.images[begin : begin + batch_size].to(device, non_blocking=True),
                    self.labels[begin : begin + batch_size].to(device, non_blocking=True),
                )
            return
        order = order.to(self.images.device)
        for idx in _chunks(order, batch_size, start):
            yield self.images[idx].to(device, non_blocking=True), self.labels[idx].to(device, non_blocking=True)

    def sample(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].cpu(), int(self.labels[index])


class _FolderImages(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Decode one image file to a fixed-size uint8 tensor (runs in DataLoader workers)."""

    def __init__(self, items: Sequence[tuple[str, int]], channels: int, size: tuple[int, int]):
        self.items = list(items)
        self.mode = "RGB" if channels == 3 else "L"
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        path, label = self.items[index]
        try:
            with Image.open(path) as opened:
                img = opened.convert(self.mode).resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: cannot read this image ({exc})", hint="remove or replace the file") from None
        if array.ndim == 2:
            array = array[:, :, None]
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), label


class _BatchList(torch.utils.data.Sampler[list[int]]):
    def __init__(self, batches: list[list[int]]):
        self.batch_list = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batch_list)

    def __len__(self) -> int:
        return len(self.batch_list)


@dataclass
class FolderSource:
    """A split of image files, decoded and resized by DataLoader workers, batch by batch."""

    items: list[tuple[str, int]]
    channels: int
    size: tuple[int, int]
    num_workers: int = 2

    def __len__(self) -> int:
        return len(self.items)

    def batches(
        self, order: torch.Tensor | None, batch_size: int, device: torch.device, start: int = 0
    ) -> Iterator[Batch]:
        from torch.utils.data import DataLoader

        if order is None:
            order = torch.arange(len(self))
        batch_list = [chunk.tolist() for chunk in _chunks(order, batch_size, start)]
        if not batch_list:
            return
        loader = DataLoader(
            _FolderImages(self.items, self.channels, self.size),
            batch_sampler=_BatchList(batch_list),
            num_workers=min(self.num_workers, len(batch_list)),
            pin_memory=device.type == "cuda",
            # The workers draw nothing at random; their base seed must not come from the global RNG,
            # whose stream (augmentation, dropout) a resumed run has to replay exactly.
            generator=torch.Generator().manual_seed(0),
        )
        for images, labels in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def sample(self, index: int) -> tuple[torch.Tensor, int]:
        return _FolderImages(self.items, self.channels, self.size)[index]


def channel_stats(source: Source, batch_size: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of a split, on the 0–1 scale (one pass, float64)."""
    total = 0
    s: torch.Tensor | None = None
    sq: torch.Tensor | None = None
    for images, _ in source.batches(None, batch_size, torch.device("cpu")):
        x = images.to(torch.float64).div_(255.0)  # (N, C, H, W)
        bs = x.sum(dim=(0, 2, 3))
        bsq = x.square().sum(dim=(0, 2, 3))
        s = bs if s is None else s + bs
        sq = bsq if sq is None else sq + bsq
        total += x.shape[0] * x.shape[2] * x.shape[3]
    if s is None or sq is None or total == 0:
        raise DataError("cannot compute normalisation statistics: the training set is empty")
    mean = s / total
    std = (sq / total - mean.square()).clamp_min(1e-12).sqrt()
    # A constant channel would divide by ~0: keep its std at 1 instead.
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return [float(v) for v in mean], [float(v) for v in std]


def image_files(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sub-folder names, sorted) and (file, class index) pairs of an image folder."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(folder))
    except FileNotFoundError as exc:
        raise DataError(
            f"{folder}: {exc}", hint="put each class's images in its own sub-folder: ROOT/train/CLASS/*.png"
        ) from None
    items = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    return classes, [(str(p), int(c)) for p, c in items]
