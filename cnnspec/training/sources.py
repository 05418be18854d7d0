"""Where batches come from: a uint8 tensor on the device, or a folder streamed by a DataLoader.

Both kinds hand out uint8 batches `(N, C, H, W)` already on the training device, in an
order the trainer chooses (so the order is reproducible and resumable mid-epoch).
Augmentation and normalisation happen afterwards, per batch, on the device.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import torch

from cnnspec.background import quiet_context
from cnnspec.errors import DataError, Diagnostic
from cnnspec.image_listing import (  # noqa: F401  (training's names for them)
    IMAGE_EXTENSIONS,
    MAX_LISTED,
    FileId,
    Identities,
    _shown,
    file_kind,
    image_files,
)
from cnnspec.preprocess import decode
from cnnspec.terminal import printable

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


def open_regular(path: str) -> BinaryIO:
    """Open `path` for reading only when it is a regular file (a FIFO, socket or device is refused).

    Opened non-blocking first, so a FIFO with no writer cannot hang the open, then checked
    with fstat on the open descriptor, so the file checked is the file read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(
                f"{printable(path)}: {file_kind(mode)}, not a regular file; cnnspec reads only regular files",
                hint="remove it from the image folder",
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def unreadable_image(path: str, exc: BaseException) -> DataError:
    """The error for an image file PIL cannot decode (or refuses as a decompression bomb)."""
    from PIL import Image

    if isinstance(exc, DataError):
        return exc
    if isinstance(exc, Image.DecompressionBombError):
        return DataError(
            f"{printable(path)}: refused as a possible decompression bomb ({exc})",
            hint=f"PIL refuses images over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels: "
            "downscale the file, or remove it",
        )
    if isinstance(exc, Image.UnidentifiedImageError):
        # PIL names the open file object ("<_io.BufferedReader name=3>"), not anything a user can act on
        empty = os.path.isfile(path) and os.path.getsize(path) == 0
        why = "an empty file (0 bytes)" if empty else "not an image format PIL can read"
        return DataError(f"{printable(path)}: cannot read this image ({why})", hint="remove or replace the file")
    return DataError(f"{printable(path)}: cannot read this image ({printable(exc)})", hint="remove or replace the file")


def check_image(path: str) -> None:
    """Open the file's header and verify its structure (PNG: every chunk's CRC) without decoding.

    Raises DataError for a special file, a file PIL cannot identify, a damaged one, or a
    decompression bomb (its header alone says how many pixels it would decode to).
    """
    import warnings

    from PIL import Image

    try:
        with open_regular(path) as file, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as opened:
                opened.verify()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, DataError) as exc:
        raise unreadable_image(path, exc) from None


@dataclass(frozen=True)
class _Unreadable:
    """What a DataLoader worker returns for a file it cannot read: the main process raises the error.

    Raised in the worker, a DataError would reach the user as torch's `Caught DataError in
    DataLoader worker process 0. Original Traceback …`; returned as data, it keeps its own words.
    """

    message: str
    hint: str | None

    def error(self) -> DataError:
        return DataError(self.message, hint=self.hint)


class _FolderImages(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Decode one image file to a uint8 tensor of `size` (converted, then resized: steps 1–2 of
    cnnspec.preprocess, which predict takes too); DataError when it cannot be read."""

    def __init__(self, items: Sequence[tuple[str, int]], channels: int, size: tuple[int, int]):
        self.items = list(items)
        self.channels = channels
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import warnings

        from PIL import Image

        path, label = self.items[index]
        try:
            with open_regular(path) as file, warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(file) as opened:
                    opened.load()
                    # Converted, then resized: the steps predict takes (cnnspec.preprocess).
                    array = decode(opened, self.channels, self.size)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, DataError) as exc:
            raise unreadable_image(path, exc) from None
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), label


class _WorkerImages(torch.utils.data.Dataset[Any]):
    """`_FolderImages` for DataLoader workers: a file that cannot be read comes back as `_Unreadable`."""

    def __init__(self, images: _FolderImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | _Unreadable:
        try:
            return self.images[index]
        except DataError as exc:
            return _Unreadable(exc.diagnostics[0].message, exc.diagnostics[0].hint)


def _collate(items: list[Any]) -> Any:
    """torch's default collation, unless an item is unreadable: then that item, for the main process."""
    from torch.utils.data import default_collate

    for item in items:
        if isinstance(item, _Unreadable):
            return item
    return default_collate(items)


# torch's words: "DataLoader worker (pid 123) is killed by signal: Killed.", "… (pid(s) 123) exited unexpectedly".
_WORKER_DIED = re.compile(r"DataLoader worker \(pid")


def worker_failure(exc: BaseException) -> DataError | None:
    """The DataError for torch's RuntimeError about a DataLoader worker that died; None for others.

    torch raises it from its SIGCHLD handler or its queue checks, wherever the main process is
    at the time, so the trainer converts it where it catches errors (`Trainer.fit`), and
    `FolderSource.batches` where it reads.
    """
    if not isinstance(exc, RuntimeError) or not _WORKER_DIED.search(str(exc)):
        return None
    return DataError(
        f"a data loading worker process died ({printable(str(exc).splitlines()[0])})",
        hint="it was killed from outside, or the system ran out of memory: lower data.num_workers, "
        "data.batch_size or data.resize and resume with --resume",
    )


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
        workers = min(self.num_workers, len(batch_list))
        loader = DataLoader(
            _WorkerImages(_FolderImages(self.items, self.channels, self.size)),
            batch_sampler=_BatchList(batch_list),
            collate_fn=_collate,
            num_workers=workers,
            # Queues that stay quiet when a worker has died: the loop below says so in its own words.
            multiprocessing_context=quiet_context() if workers else None,
            pin_memory=device.type == "cuda",
            # The workers draw nothing at random; their base seed must not come from the global RNG,
            # whose stream (augmentation, dropout) a resumed run has to replay exactly.
            generator=torch.Generator().manual_seed(0),
        )
        try:
            for batch in loader:
                if isinstance(batch, _Unreadable):
                    raise batch.error()
                images, labels = batch
                yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        except RuntimeError as exc:
            failure = worker_failure(exc)
            if failure is None:
                raise
            raise failure from None

    def sample(self, index: int) -> tuple[torch.Tensor, int]:
        return _FolderImages(self.items, self.channels, self.size)[index]

    def check_files(self) -> None:
        check_image_files(self.items)


def check_image_files(items: Sequence[tuple[str, int]]) -> None:
    """Open every file's header and verify it (cheap: no pixel is decoded); DataError naming each bad one."""
    problems: list[Diagnostic] = []
    for path, _ in items:
        try:
            check_image(path)
        except DataError as exc:
            problems += exc.diagnostics
            if len(problems) == MAX_LISTED:
                break
    if problems:
        raise DataError(problems)


# A channel whose standard deviation over the training split is below one grey level (1/255) is
# constant, or nearly: dividing by it would turn an invisible change of one pixel into a huge input.
MIN_STD = 1.0 / 255.0


def channel_stats(
    source: Source, batch_size: int = 1024, *, warn: Callable[[str], None] | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of a split, on the 0–1 scale (one pass, float64).

    A channel whose std is below MIN_STD gets std 1 (it is then only shifted by its mean), and
    `warn` is told which.
    """
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
    std = (sq / total - mean.square()).clamp_min(0.0).sqrt()
    flat = [int(c) for c in torch.nonzero(std < MIN_STD).flatten()]
    if flat and warn is not None:
        listed = ", ".join(f"{c} (mean {float(mean[c]):.4g}, std {float(std[c]):.2g})" for c in flat)
        warn(
            f"data.normalize auto: channel{'s' if len(flat) > 1 else ''} {listed} hardly vary"
            f" over the training set; normalised with std 1 (less than one grey level, 1/255, of spread)."
            " Set data.normalize: {mean: [...], std: [...]} to choose yourself"
        )
    std = torch.where(std < MIN_STD, torch.ones_like(std), std)
    return [float(v) for v in mean], [float(v) for v in std]


SHARED_IMAGES_HINT = (
    "each split needs images of its own, or its accuracy is measured on images the model trained on:"
    " remove the link (or the hard-linked copy) from one of the splits"
)


def refuse_shared_images(splits: Sequence[tuple[str, list[tuple[str, int]], Identities]]) -> None:
    """DataError when one folder or one image file is in two splits (through a symbolic link or a
    hard link), naming both paths; `splits` are (name, items, identities) from `image_files`.

    A folder shared whole is named once (not each image in it). For single files, every split
    but the largest is indexed by identity and the largest is looked up in it: memory for the
    smaller splits only, one lookup per image of the largest.
    """
    problems: list[Diagnostic] = []
    owner: dict[FileId, tuple[str, str]] = {}
    reported: list[str] = []
    for name, _, ids in splits:
        for key, path in ids.folders.items():
            earlier = owner.get(key)
            if earlier is None:
                owner[key] = (name, path)
            elif earlier[0] != name and not any(_inside(path, r) for r in reported):
                reported.append(path)
                if len(problems) < MAX_LISTED:
                    problems.append(
                        Diagnostic(
                            f"the same images are in {earlier[0]} and {name}: {_shown(path)} is the folder"
                            f" {_shown(earlier[1])}",
                            hint=SHARED_IMAGES_HINT,
                        )
                    )
    if problems:
        raise DataError(problems)
    ordered = sorted(splits, key=lambda split: len(split[1]))
    indexed: dict[FileId, tuple[str, str]] = {}
    rank = {name: i for i, (name, _, _) in enumerate(splits)}  # said in the order given: train, val, test

    def shared(name: str, path: str, earlier: tuple[str, str]) -> None:
        (a, path_a), (b, path_b) = sorted([earlier, (name, path)], key=lambda split: rank[split[0]])
        if len(problems) < MAX_LISTED:
            problems.append(
                Diagnostic(
                    f"the same image is in {a} and {b}: {_shown(path_a)} and {_shown(path_b)} are one file",
                    hint=SHARED_IMAGES_HINT,
                )
            )

    for name, items, ids in ordered[:-1]:
        for index, (path, _) in enumerate(items):
            key = ids.file(index)
            earlier = indexed.get(key)
            if earlier is None:
                indexed[key] = (name, path)
            elif earlier[0] != name:
                shared(name, path, earlier)
    if ordered and indexed:
        name, items, ids = ordered[-1]
        for index, (path, _) in enumerate(items):
            earlier = indexed.get(ids.file(index))
            if earlier is not None:
                shared(name, path, earlier)
    if problems:
        raise DataError(problems)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
