"""The dataset a spec names (a class of cnnspec.datasets), loaded into train/val/test sources.

Datasets that fit in memory (torchvision's, digits, synthetic) become one uint8 tensor
per split; `image_folder` stays on disk and streams through a DataLoader. The loaders of the
built-in datasets are here; each dataset's class says which one it uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from cnnspec.checker.checker import check
from cnnspec.checker.data import batch_statistics, no_data_section
from cnnspec.checker.graph import Graph
from cnnspec.datasets import DATASETS, Arrays, TorchvisionDataset
from cnnspec.errors import DataError
from cnnspec.layers.base import pair
from cnnspec.spec.model import DataSpec, Spec
from cnnspec.spec.paths import data_root
from cnnspec.terminal import printable
from cnnspec.training.distributed import smallest_batch
from cnnspec.training.memory import ensure_fits
from cnnspec.training.precision import resolve
from cnnspec.training.sources import (
    FolderSource,
    Identities,
    Source,
    TensorSource,
    check_image_files,
    image_files,
    refuse_shared_images,
)

# Seed of the fixed digits train/test split: the same test set for every run and spec.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass
class DataBundle:
    """The splits of a dataset and its class names."""

    train: Source
    val: Source | None
    test: Source | None
    class_names: list[str]
    in_memory: bool
    # image_folder: what data.cache chose and what the disk cache did, and its warnings (the train log's lines)
    notes: list[str] = field(default_factory=list)
    folders: _Folders | None = None  # image_folder: its folders' files, for hold_folder


def load_data(spec: Spec, *, need_train: bool = True, processes: int = 1) -> DataBundle:
    """Load the dataset `spec.data` names, split off validation, resize; uint8 sources on the CPU.

    `processes`: how many share the training set (torchrun); the batch-statistics check takes the
    smallest batch any of them trains on."""
    data = spec.data
    if data is None:
        raise DataError(no_data_section(spec))
    graph = check(spec)
    if need_train:  # before a byte of the dataset is allocated
        ensure_fits(spec, graph, resolve(spec.train).device)
    bundle = DATASETS[data.dataset.name].load(spec, data)
    if isinstance(bundle.train, FolderSource):
        # Every image file's header, before the run directory is touched: a bad file is named now, not
        # mid-epoch. hold_folder checks what it does not read from the disk cache (whose key holds every
        # file's size and mtime: those files were decoded when the cache was written).
        bundle = hold_folder(spec, bundle) if need_train else _checked(bundle)
    if need_train:
        _check_batches(graph, data, len(bundle.train), processes)
    return bundle


def _check_batches(graph: Graph, data: DataSpec, images: int, processes: int) -> None:
    """The batch the loop will take (data.batch_size, or each process's share of a set smaller than one
    global batch) must give batch norm more than one value per channel; shared by every process."""
    if images < processes:
        raise DataError(
            f"{images} training images cannot be shared by {processes} processes", hint="start fewer processes"
        )
    batch = smallest_batch(images, data.batch_size, processes)
    problems = batch_statistics(graph, batch, ("data", "batch_size"))
    if problems and processes > 1:
        share = (
            f"{processes} processes share {images} training images, fewer than one global batch of "
            f"{processes}×{data.batch_size}: each trains on its share in one step, {batch} image"
            f"{'s' if batch > 1 else ''} for the smallest"
        )
        problems = [
            replace(p, notes=(*p.notes, share), hint="start fewer processes, or use more training images")
            for p in problems
        ]
    if problems:
        raise DataError(problems)


def in_memory(spec: Spec, data: DataSpec, arrays: Arrays) -> DataBundle:
    """A dataset's whole splits (`Dataset.arrays`) as sources: resized by data.resize, validation split off."""
    seed = spec.train.seed
    (train_x, train_y), (test_x, test_y), classes = arrays
    if data.resize is not None:
        size = pair(data.resize)
        train_x, test_x = resize_uint8(train_x, size), resize_uint8(test_x, size)
    train_x, train_y, val = _split(train_x, train_y, data.val_split, seed)
    return DataBundle(TensorSource(train_x, train_y), val, TensorSource(test_x, test_y), classes, in_memory=True)


def _split(
    images: torch.Tensor, labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, TensorSource | None]:
    """Hold out `fraction` of the training set for validation, the same way for a given seed."""
    n_val = round(len(labels) * fraction)
    if n_val == 0:
        return images, labels, None
    if n_val >= len(labels):
        raise DataError(
            f"val_split {fraction} leaves no training images out of {len(labels)}", hint="lower data.val_split"
        )
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return images[train_idx], labels[train_idx], TensorSource(images[val_idx], labels[val_idx])


def resize_uint8(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a uint8 (N, C, H, W) tensor once, image by image, with the resize predict uses
    (`cnnspec.preprocess.resize_array`: Pillow's bilinear filter, antialiased when shrinking)."""
    import numpy as np

    from cnnspec.preprocess import resize_array

    if tuple(images.shape[-2:]) == size:
        return images
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    source = images.numpy()
    for i in range(source.shape[0]):
        resized = resize_array(np.ascontiguousarray(source[i].transpose(1, 2, 0)), size)  # (H, W, C)
        out[i] = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    return out


def digits_arrays() -> Arrays:
    """scikit-learn's 8×8 digits (values 0–16, scaled to 0–255), split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy((digits.images * (255.0 / 16.0)).round()).to(torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(digits.target).long()
    idx = torch.arange(len(labels)).numpy()
    train_idx, test_idx = train_test_split(
        idx, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=digits.target
    )
    train_i, test_i = torch.from_numpy(train_idx).sort().values, torch.from_numpy(test_idx).sort().values
    return (images[train_i], labels[train_i]), (images[test_i], labels[test_i]), [str(i) for i in range(10)]


def make_synthetic(
    shape: tuple[int, int, int], n: int, num_classes: int, seed: int, *, prototypes_seed: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` random uint8 images: a smooth per-class pattern plus noise, so a model can learn them."""
    import torch.nn.functional as F

    c, h, w = shape
    proto_gen = torch.Generator().manual_seed(seed if prototypes_seed is None else prototypes_seed)
    coarse = torch.rand((num_classes, c, max(h // 4, 1), max(w // 4, 1)), generator=proto_gen)
    prototypes = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)  # (K, C, H, W)
    gen = torch.Generator().manual_seed(seed + 7919)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    images = torch.empty((n, c, h, w), dtype=torch.uint8)
    for begin in range(0, n, 4096):
        y = labels[begin : begin + 4096]
        noise = torch.rand((len(y), c, h, w), generator=gen)
        x = 0.6 * prototypes[y] + 0.4 * noise
        images[begin : begin + 4096] = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
    return images, labels


def torchvision_arrays(dataset: type[TorchvisionDataset], spec: Spec, data: DataSpec) -> Arrays:
    """A torchvision dataset's arrays, read straight into uint8 tensors (no per-image PIL work), from
    data.dataset.root (relative to the spec's folder: cnnspec.spec.paths.data_root)."""
    import numpy as np
    import torchvision.datasets as tvd

    name, files = dataset.name, dataset.files
    cls = getattr(tvd, dataset.torchvision_class)
    root = data_root(spec)
    splits = []
    classes: list[str] = []
    for train in (True, False):
        try:
            ds = cls(str(root), download=data.dataset.download, **dataset.split(train))
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, … for missing files
            how = "download: true could not fetch it" if data.dataset.download else "download is off"
            raise DataError(
                f"{name} is not in {root} and {how} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                hint=f"put {files} in {root}, or run once with network access and data.dataset.download: true",
            ) from None
        raw = ds.data
        images = raw.numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        if images.ndim == 3:  # MNIST-like (N, H, W)
            images = images[:, None]
        elif dataset.channels_last:  # CIFAR (N, H, W, C); SVHN is already (N, C, H, W)
            images = images.transpose(0, 3, 1, 2)
        targets = getattr(ds, dataset.targets)
        labels = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        splits.append((torch.from_numpy(np.ascontiguousarray(images)).to(torch.uint8), labels))
        classes = list(getattr(ds, "classes", None) or [str(i) for i in range(int(labels.max()) + 1)])
    return splits[0], splits[1], classes


def load_image_folder(spec: Spec, data: DataSpec) -> DataBundle:
    """ROOT/train/CLASS/* (required), ROOT/val/CLASS/* and ROOT/test/CLASS/* (optional), ROOT being
    data.dataset.root (relative to the spec's folder: cnnspec.spec.paths.data_root). Every image is
    resized to data.resize, or when it is not set to the model's input size."""
    root = data_root(spec)
    channels, h, w = spec.model.input.shape
    size, seed = (h, w), spec.train.seed
    if data.resize is not None:
        size = pair(data.resize)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(
            f"image_folder: no {train_dir} folder",
            hint=f"put training images in {train_dir}/CLASS/*.png (and optionally {root}/val, {root}/test)",
        )
    found: list[tuple[str, list[tuple[str, int]], Identities]] = []  # each split's files, by identity
    train_ids = Identities()
    classes, train_items = image_files(train_dir, root, train_ids)
    found.append(("train", train_items, train_ids))
    if not train_items:
        raise DataError(
            f"image_folder: no images in {train_dir}/*/", hint="supported: .png .jpg .jpeg .bmp .webp .tif .ppm .pgm"
        )

    def other(split: str) -> list[tuple[str, int]] | None:
        folder = root / split
        if not folder.is_dir():
            if os.path.lexists(folder):  # a file or a broken link named test/val: the split is not silently dropped
                raise DataError(
                    f"{printable(folder)} is not a folder: ROOT/{split}/ holds the {split} split's class folders",
                    hint=f"make {split} a folder of class folders, or move it away to train without a {split} split",
                )
            return None
        ids = Identities()
        names, items = image_files(folder, root, ids)
        if not items:
            raise DataError(
                f"{printable(folder)} holds no images: ROOT/{split}/CLASS/ holds the {split} split",
                hint=f"put the {split} images in class folders there, or remove the empty {split} folder",
            )
        found.append((split, items, ids))
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{folder} has classes that {train_dir} lacks: {', '.join(unknown)}")
        remap = {i: classes.index(n) for i, n in enumerate(names)}
        return [(p, remap[c]) for p, c in items]

    val_items = other("val")
    test_items = other("test")
    # An image in two splits (a class folder linked to train's, a hard link) would be measured on
    # what the model trained on: a test accuracy of 1.0 on training images.
    refuse_shared_images(found)
    folder_items = train_items  # the whole train folder, before validation is split off
    split_off: tuple[list[int], list[int]] | None = None  # (train, val) indices into folder_items
    if val_items is None and data.val_split > 0:
        n_val = round(len(train_items) * data.val_split)
        if n_val >= len(train_items):
            raise DataError(f"val_split {data.val_split} leaves no training images out of {len(train_items)}")
        perm = torch.randperm(len(train_items), generator=torch.Generator().manual_seed(seed)).tolist()
        val_set = set(perm[:n_val])
        kept = [i for i in range(len(train_items)) if i not in val_set]
        split_off = (kept, sorted(val_set))
        val_items = [train_items[i] for i in split_off[1]] if n_val else None
        train_items = [train_items[i] for i in kept]

    def source(items: list[tuple[str, int]] | None) -> FolderSource | None:
        return FolderSource(items, channels, size, data.num_workers) if items else None

    train = source(train_items)
    assert train is not None  # checked non-empty above
    val, test = source(val_items), source(test_items)
    bundle = DataBundle(train, val, test, classes, in_memory=False)  # headers not checked yet: load_data does
    bundle.folders = _Folders(root, folder_items, split_off, val_from_folder=(root / "val").is_dir())
    return bundle


def _checked(bundle: DataBundle) -> DataBundle:
    """The bundle, once every file of its streamed splits has a readable image header."""
    for split in (bundle.train, bundle.val, bundle.test):
        if isinstance(split, FolderSource):
            split.check_files()
    return bundle


@dataclass
class _Folders:
    """How an image folder's splits came from its folders: what `hold_folder` decodes, folder by folder."""

    root: Path
    train: list[tuple[str, int]]  # ROOT/train's files, validation not yet split off
    split_off: tuple[list[int], list[int]] | None  # (train, val) indices into `train`; None: no val from train
    val_from_folder: bool  # the val split is ROOT/val


def hold_folder(spec: Spec, bundle: DataBundle) -> DataBundle:
    """data.cache: an image folder's splits decoded into memory (from the disk cache when it has them), or
    streamed as they are; the bundle says which in its notes (cnnspec.training.folder_cache)."""
    from cnnspec.training.folder_cache import (
        CacheReport,
        DecodedFolder,
        cache_file,
        cache_folder,
        check_memory,
        choose_memory,
        decoded_bytes,
        is_cached,
        load_folder,
    )
    from cnnspec.training.memory import available_memory

    assert spec.data is not None and isinstance(bundle.train, FolderSource)
    folders = bundle.folders
    assert folders is not None
    channels, size = bundle.train.channels, bundle.train.size
    splits = [s for s in (bundle.train, bundle.val, bundle.test) if s is not None]
    total = decoded_bytes(sum(len(s) for s in splits), channels, size)
    device = resolve(spec.train).device
    host = available_memory(torch.device("cpu"))
    free = [host] if device.type == "cpu" else [host, available_memory(device)]
    check_memory(spec.data, total, free)
    memory, reason = choose_memory(spec.data, total, free)
    notes: list[str] = []
    if not memory:
        bundle.notes = [CacheReport(False, reason).message()]
        return _checked(bundle)
    where = cache_folder(spec)
    report = CacheReport(True, reason, where=where)
    wanted = {"train": folders.train}
    if folders.split_off is None and folders.val_from_folder and isinstance(bundle.val, FolderSource):
        wanted["val"] = bundle.val.items
    if isinstance(bundle.test, FolderSource):
        wanted["test"] = bundle.test.items
    files = {name: cache_file(folders.root / name, items, channels, size, where) for name, items in wanted.items()}
    # The header of every file the disk cache does not hold, before any is decoded; a cached folder's
    # files were decoded when its cache file was written (its key holds each file's size and mtime).
    for name, items in wanted.items():
        cached = files[name]
        if cached is None or not is_cached(cached):
            check_image_files(items)

    def load(name: str) -> DecodedFolder:
        items = wanted[name]
        images, report.disk[name] = load_folder(name, files[name], items, channels, size, notes.append)
        return DecodedFolder(images, torch.tensor([label for _, label in items], dtype=torch.int64))

    whole = load("train")
    train: DecodedFolder = whole
    val = load("val") if "val" in wanted else None
    if folders.split_off is not None:
        kept, held = (torch.tensor(idx, dtype=torch.int64) for idx in folders.split_off)
        train = DecodedFolder(whole.images[kept], whole.labels[kept])
        val = DecodedFolder(whole.images[held], whole.labels[held]) if len(held) else None
    test = load("test") if "test" in wanted else None
    return DataBundle(
        train, val, test, bundle.class_names, in_memory=True, notes=[report.message(), *notes], folders=folders
    )
