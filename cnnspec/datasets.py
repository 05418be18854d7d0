"""Every dataset a spec can name (`data.dataset.name`): one class each, registered.

A dataset's class holds all that cnnspec knows about it: its name, how messages call it, its words
in the schema, the native shape of its images (what `validate` checks the model input against,
without loading a byte), how many images training holds in memory (the memory estimate), and how
it is loaded (`arrays`, or `load` for one that is not held in memory), with torch imported inside
those methods, as a layer kind's `build` imports torch. `@register` adds a class; the schema's
`DatasetName` (cnnspec.spec.model) is the names registered when it is imported, so adding a
dataset is adding one class here.

The loaders of the built-in datasets are in cnnspec/training/datasets.py, which turns any
dataset's arrays into the train/val/test sources training reads (resize, validation split).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    import torch

    from cnnspec.spec.model import DataSpec, Spec
    from cnnspec.training.datasets import DataBundle

Shape = tuple[int, int, int]
"""(C, H, W) of one image."""
Arrays = tuple[tuple["torch.Tensor", "torch.Tensor"], tuple["torch.Tensor", "torch.Tensor"], list[str]]
"""((train images, train labels), (test images, test labels), class names): uint8 (N, C, H, W) images."""


class Dataset:
    """Base of every dataset. Subclasses set `name`, `title`, `description` and implement `arrays`."""

    name: ClassVar[str]
    title: ClassVar[str]  # as messages name it: "CIFAR-10"
    description: ClassVar[str]  # the schema's words for it (datasets with the same words are listed together)
    shape: ClassVar[Shape | None] = None  # its images' native shape; None: they take the model input's
    images: ClassVar[int] = 0  # train + test images held in memory as uint8 (0: as many as the spec says)
    streamed: ClassVar[bool] = False  # read from disk a batch at a time (images of any size: resized to the input)
    reads_files: ClassVar[bool] = False  # reads (or downloads into) data.dataset.root, relative to the spec's folder
    classes: ClassVar[int | None] = None  # how many classes it has, known without loading it (None: not known)

    @classmethod
    def class_count(cls, data: DataSpec) -> int | None:
        """How many classes the dataset the spec's data section names has, known statically (`validate`
        checks the model's head against it); None when only loading it tells (an image folder)."""
        return cls.classes

    @classmethod
    def missing(cls, root: Path) -> str | None:
        """What training would find missing under `root` (data.dataset.root, absolute), said without
        reading an image: `validate --for train`. None when nothing is known to be missing."""
        return None

    @classmethod
    def listed_classes(cls, root: Path) -> int | None:
        """How many classes training will find under `root`, listed without reading an image (a
        DataError for what training would refuse); None when it is not known without loading."""
        return None

    @classmethod
    def arrays(cls, spec: Spec, data: DataSpec) -> Arrays:
        """The whole train and test splits as uint8 tensors, with the class names."""
        raise NotImplementedError(f"dataset {cls.name} has no arrays")

    @classmethod
    def load(cls, spec: Spec, data: DataSpec) -> DataBundle:
        """The train/val/test sources: by default `arrays`, resized and split by the spec."""
        from cnnspec.training.datasets import in_memory

        return in_memory(spec, data, cls.arrays(spec, data))


DATASETS: dict[str, type[Dataset]] = {}
D = TypeVar("D", bound=type[Dataset])


def register(cls: D) -> D:
    """Class decorator: make `cls` the dataset named `cls.name`; refuses a name that is taken."""
    existing = DATASETS.get(cls.name)
    if existing is not None and existing is not cls:
        raise TypeError(f"dataset '{cls.name}' is {existing.__qualname__} already; {cls.__qualname__} cannot take it")
    DATASETS[cls.name] = cls
    return cls


class TorchvisionDataset(Dataset):
    """A dataset torchvision downloads (`data.dataset.root`, `download`)."""

    description = "torchvision"
    reads_files = True
    torchvision_class: ClassVar[str]  # in torchvision.datasets
    files: ClassVar[str]  # what torchvision expects under root: said when the files are missing offline
    targets: ClassVar[str] = "targets"  # the attribute that holds the labels
    channels_last: ClassVar[bool] = True  # colour images stored (N, H, W, C); grey ones are (N, H, W)

    @classmethod
    def split(cls, train: bool) -> dict[str, Any]:
        """The keyword arguments that choose the train or test split."""
        return {"train": train}

    @classmethod
    def arrays(cls, spec: Spec, data: DataSpec) -> Arrays:
        from cnnspec.training.datasets import torchvision_arrays

        return torchvision_arrays(cls, spec, data)


# Registered in this order, which is the order the schema lists them in.


@register
class Cifar10(TorchvisionDataset):
    name = "cifar10"
    title = "CIFAR-10"
    shape = (3, 32, 32)
    images = 60_000
    classes = 10
    torchvision_class = "CIFAR10"
    files = "cifar-10-batches-py/ (extracted from cifar-10-python.tar.gz)"


@register
class Cifar100(TorchvisionDataset):
    name = "cifar100"
    title = "CIFAR-100"
    shape = (3, 32, 32)
    images = 60_000
    classes = 100
    torchvision_class = "CIFAR100"
    files = "cifar-100-python/ (extracted from cifar-100-python.tar.gz)"


@register
class Mnist(TorchvisionDataset):
    name = "mnist"
    title = "MNIST"
    shape = (1, 28, 28)
    images = 70_000
    classes = 10
    torchvision_class = "MNIST"
    files = "MNIST/raw/ (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-…)"


@register
class FashionMnist(TorchvisionDataset):
    name = "fashion_mnist"
    title = "Fashion-MNIST"
    shape = (1, 28, 28)
    images = 70_000
    classes = 10
    torchvision_class = "FashionMNIST"
    files = "FashionMNIST/raw/ (train-images-idx3-ubyte, …, t10k-…)"


@register
class Svhn(TorchvisionDataset):
    name = "svhn"
    title = "SVHN"
    shape = (3, 32, 32)
    images = 73_257 + 26_032
    classes = 10
    torchvision_class = "SVHN"
    files = "train_32x32.mat and test_32x32.mat"
    targets = "labels"
    channels_last = False  # already (N, C, H, W)

    @classmethod
    def split(cls, train: bool) -> dict[str, Any]:
        return {"split": "train" if train else "test"}


@register
class ImageFolder(Dataset):
    name = "image_folder"
    title = "image_folder"
    description = "your own ROOT/train/CLASS/*.png, optional ROOT/val and ROOT/test"
    streamed = True
    reads_files = True

    @classmethod
    def missing(cls, root: Path) -> str | None:
        train = root / "train"
        return None if train.is_dir() else f"no {train} folder (the training images go in {train}/CLASS/*.png)"

    @classmethod
    def listed_classes(cls, root: Path) -> int | None:
        from cnnspec.image_listing import image_files

        return len(image_files(root / "train", root)[0])

    @classmethod
    def load(cls, spec: Spec, data: DataSpec) -> DataBundle:
        from cnnspec.training.datasets import load_image_folder

        return load_image_folder(spec, data)


@register
class Digits(Dataset):
    name = "digits"
    title = "the digits dataset"
    description = "scikit-learn's 8×8 digits, offline"
    shape = (1, 8, 8)
    images = 1_797
    classes = 10

    @classmethod
    def arrays(cls, spec: Spec, data: DataSpec) -> Arrays:
        from cnnspec.training.datasets import digits_arrays

        return digits_arrays()


@register
class Synthetic(Dataset):
    name = "synthetic"
    title = "synthetic"
    description = "random images, for smoke tests and benchmarks"

    @classmethod
    def class_count(cls, data: DataSpec) -> int | None:
        return data.dataset.num_classes

    @classmethod
    def arrays(cls, spec: Spec, data: DataSpec) -> Arrays:
        from cnnspec.training.datasets import make_synthetic

        shape, seed = spec.model.input.shape, spec.train.seed
        n, k = data.dataset.num_samples, data.dataset.num_classes
        train = make_synthetic(shape, n, k, seed)
        test = make_synthetic(shape, max(n // 5, k), k, seed + 1, prototypes_seed=seed)
        return train, test, [str(i) for i in range(k)]


def names_description() -> str:
    """The schema's description of `data.dataset.name`: each dataset's name with its words, those
    that share their words listed together (cifar10, cifar100, … (torchvision))."""
    groups: list[tuple[str, list[str]]] = []
    for name, cls in DATASETS.items():
        if groups and groups[-1][0] == cls.description:
            groups[-1][1].append(name)
        else:
            groups.append((cls.description, [name]))
    return "; ".join(f"{', '.join(names)} ({words})" for words, names in groups) + "."
