"""Static checks of the data section against the model's input."""

from __future__ import annotations

from cnnspec.errors import Diagnostic
from cnnspec.layers.base import pair
from cnnspec.spec.model import RandomCrop, RandomResizedCrop, Spec

# Image shape (C, H, W) of each built-in dataset; None: given by the spec.
DATASET_SHAPES: dict[str, tuple[int, int, int] | None] = {
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "svhn": (3, 32, 32),
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "digits": (1, 8, 8),
    "synthetic": None,
    "image_folder": None,
}

DATASET_TITLES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "svhn": "SVHN",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "digits": "the digits dataset",
}


def check_data(spec: Spec) -> list[Diagnostic]:
    """Dataset and augmentation shapes must end at the model's input shape."""
    data = spec.data
    if data is None:
        return []
    src = spec.source
    want = spec.model.input.shape
    name = data.dataset.name
    native = DATASET_SHAPES[name]
    out: list[Diagnostic] = []
    if name == "image_folder" and data.resize is None:
        out.append(
            Diagnostic(
                "image_folder needs data.resize: images in a folder can have any size",
                src.locate(("data", "dataset", "name")),
                hint=f"add `resize: [{want[1]}, {want[2]}]` under data",
            )
        )
        return out
    channels = native[0] if native else want[0]
    size = (native[1], native[2]) if native else (want[1], want[2])
    if native and channels != want[0]:
        out.append(
            Diagnostic(
                f"{DATASET_TITLES[name]} images have {channels} channel{'s' if channels > 1 else ''} "
                f"but model.input has {want[0]}",
                src.locate(("model", "input", "channels")),
                notes=(f"{DATASET_TITLES[name]} is {native[0]}×{native[1]}×{native[2]}",),
                hint=f"set model.input.channels: {channels}",
            )
        )
    if data.resize is not None:
        size = pair(data.resize)
    where: tuple[str | int, ...] = ("data", "resize") if data.resize is not None else ("data", "dataset", "name")
    for index, item in enumerate(data.augment):
        op = item.op
        if isinstance(op, RandomCrop):
            crop = pair(op.size)
            padded = (size[0] + 2 * op.padding, size[1] + 2 * op.padding)
            if crop[0] > padded[0] or crop[1] > padded[1]:
                out.append(
                    Diagnostic(
                        f"random_crop of {crop[0]}×{crop[1]} is larger than the {padded[0]}×{padded[1]} (padded) image",
                        src.locate(("data", "augment", index, "random_crop", "size")),
                        hint="crop smaller, or pad more",
                    )
                )
            size, where = crop, ("data", "augment", index, "random_crop", "size")
        elif isinstance(op, RandomResizedCrop):
            size, where = pair(op.size), ("data", "augment", index, "random_resized_crop", "size")
    if size != (want[1], want[2]):
        native_note: tuple[str, ...] = ()
        if native:
            native_note = (f"{DATASET_TITLES[name]} is {native[0]}×{native[1]}×{native[2]}",)
        out.append(
            Diagnostic(
                f"the data pipeline gives {size[0]}×{size[1]} images but model.input is {want[1]}×{want[2]}",
                src.locate(where),
                notes=native_note,
                hint=f"set model.input height/width to {size[0]}×{size[1]}, or data.resize: [{want[1]}, {want[2]}]",
            )
        )
    return out
