"""How an image becomes a model's input: one definition, one implementation (numpy and Pillow, no torch).

The steps, in this order (docs/training.md, "Preprocessing"):

1. **convert**: any mode Pillow opens → 8-bit grey (1 channel) or RGB (3 channels), `to_uint8`
   (16-bit and 32-bit integer images divided by 65535, float images taken as 0–1: scaled, not clipped);
2. **resize**: to `image_size` with Pillow's bilinear filter (antialiased when shrinking, like
   torchvision's Resize) when `resize` is set; otherwise an image must have that size already;
3. **fit**: to `input_size`, the model's H×W: a centre crop (padded like the training crop,
   `padding_mode`, where the crop is larger than the image), or a resize (the evaluation form of
   `random_resized_crop`);
4. **scale**: divide by 255 (the 0–1 scale of ToTensor);
5. **normalize**: subtract `mean` and divide by `std`, per channel (skipped when they are None).

Steps 1–2 (`decode`) turn a file into the uint8 image that training stores: the image-folder
decoder and an in-memory dataset's `data.resize` use them. Steps 3–5 (`prepare_batch`) turn stored
uint8 images into the model's input for validation, test, `cnnspec evaluate`, export's parity gate,
predict and bench. Training's own batches take random crops instead of step 3 (cnnspec.training.augment).
The definition is computed once from the spec and the run (`preprocessing_for`) and recorded in the
ONNX metadata (`preprocessing`), so that predict and bench read it rather than guess it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cnnspec.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

    from cnnspec.augments import AugmentKind
    from cnnspec.spec.model import Spec

Fit = Literal["center_crop", "resize"]
FITS: tuple[Fit, ...] = ("center_crop", "resize")
PaddingMode = Literal["constant", "reflect", "edge"]
PADDING_MODES: tuple[PaddingMode, ...] = ("constant", "reflect", "edge")
# Stored images are 8-bit: step 4 divides by this (the 0–1 scale of ToTensor()).
PIXEL_SCALE = 255.0
# The most pixels an image file may have to be read at all: one limit for training's image folders,
# evaluate, predict, bench and serve, so that an image one of them reads is never refused by another (a
# run's test folder gets the same accuracy from predict as from evaluate). It is Pillow's own refusal of a
# decompression bomb (Image.open raises DecompressionBombError above 2 × Image.MAX_IMAGE_PIXELS, 2 ×
# 89,478,485 by default), which training's loader relies on; predict and serve check it from the header
# before decoding and ignore Pillow's warning at half of it. About 716 MB as RGBA while it is converted.
MAX_IMAGE_PIXELS = 178_956_970

# Modes PIL opens with more than 8 bits per sample, and the value that is full scale (1.0) in each.
# "I" is what PIL gives 16-bit files in some formats (TIFF, PGM): 65535 is white; "F" is taken to
# be on the 0–1 scale already. Values outside [0, full scale] are clipped (they are not light levels).
_FULL_SCALE = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def to_uint8(image: Image.Image, channels: int) -> np.ndarray:
    """A PIL image of any mode as a uint8 array (H, W, channels) on the 0–255 scale (step 1).

    8-bit modes go through PIL's own conversion (alpha dropped, palettes looked up, CMYK, YCbCr,
    LAB and HSV to RGB, as torchvision's folder loader does); 16-bit and 32-bit integer and float
    modes are scaled by their full-scale value (`_FULL_SCALE`), not clipped to 255.
    """
    from PIL import Image

    full = _FULL_SCALE.get(image.mode)
    if full is not None:
        values = np.asarray(image, dtype=np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=full, neginf=0.0)
        grey = np.rint(np.clip(values / full, 0.0, 1.0) * 255.0).astype(np.uint8)
        image = Image.fromarray(grey)
    target = "RGB" if channels == 3 else "L"
    try:
        converted = image.convert(target)
    except ValueError:  # no direct conversion (LAB to grey, say): through RGB, as PIL does for most modes
        converted = image.convert("RGB").convert(target)
    array = np.asarray(converted, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def resize_array(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) uint8 or float32 resized to `size` (H, W) with Pillow's bilinear filter, which
    antialiases when it shrinks (torchvision's Resize(antialias=True) follows it); the same array
    when it has that size already. Channels are resampled independently (RGB in one call)."""
    from PIL import Image

    if tuple(array.shape[:2]) == tuple(size):
        return array
    wh = (size[1], size[0])
    bilinear = Image.Resampling.BILINEAR
    if array.dtype == np.uint8 and array.shape[2] == 3:
        return np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize(wh, bilinear))
    dtype = np.uint8 if array.dtype == np.uint8 else np.float32  # Pillow's "L" or "F" planes
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(array[:, :, c], dtype=dtype)).resize(wh, bilinear))
        for c in range(array.shape[2])
    ]
    return np.stack(planes, axis=2)


def decode(image: Image.Image, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """Steps 1–2: a PIL image → uint8 (H, W, channels), resized to `size` when it is given."""
    array = to_uint8(image, channels)
    return resize_array(array, size) if size is not None else array


def center_crop(images: np.ndarray, size: tuple[int, int], padding_mode: PaddingMode = "constant") -> np.ndarray:
    """The centred `size` window of each image of (N, C, H, W); where the window is larger than the
    image, the image is padded first (`padding_mode`, as the training crop pads). An odd difference
    leaves the extra row or column at the bottom or right, as torchvision's CenterCrop does."""
    h, w = images.shape[-2:]
    th, tw = size
    if h < th or w < tw:
        ph, pw = max(th - h, 0), max(tw - w, 0)
        pads = ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        images = np.pad(images, pads, mode=padding_mode)
        h, w = images.shape[-2:]
    top, left = (h - th) // 2, (w - tw) // 2
    return images[:, :, top : top + th, left : left + tw]


def prepare_batch(
    images: np.ndarray,
    fit: Fit,
    size: tuple[int, int],
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    padding_mode: PaddingMode = "constant",
) -> np.ndarray:
    """Steps 3–5: uint8 (N, C, H, W) → the model's float32 input (N, C, size): fit, scale, normalise."""
    n, c = images.shape[:2]
    if fit == "resize" and tuple(images.shape[-2:]) != tuple(size):
        # On the 0–255 scale, unrounded: interpolation commutes with the scale and normalisation.
        x = np.empty((n, c, *size), dtype=np.float32)
        for i in range(n):
            x[i] = resize_array(images[i].transpose(1, 2, 0).astype(np.float32), size).transpose(2, 0, 1)
    else:
        x = center_crop(images, size, padding_mode).astype(np.float32)
    x /= np.float32(PIXEL_SCALE)
    if mean is not None and std is not None:
        x -= np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        x /= np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclass(frozen=True)
class EvaluationFit:
    """Step 3 as a training recipe implies it: what the last size-changing augmentation would
    give, without randomness (torchvision's CenterCrop for RandomCrop, Resize for RandomResizedCrop)."""

    fit: Fit
    size: tuple[int, int]
    padding_mode: PaddingMode = "constant"


def evaluation_fit(ops: Sequence[AugmentKind]) -> EvaluationFit | None:
    """Step 3 for a list of augmentations: the last size-changing one's; None when none changes the size."""
    found: EvaluationFit | None = None
    for op in ops:
        found = op.evaluation_fit() or found
    return found


@dataclass(frozen=True)
class Preprocessing:
    """Every step from an image file to a model's input (the module docstring lists them in order)."""

    channels: int  # step 1: 1 (grey) or 3 (RGB) for files; stored tensors may have any count
    image_size: tuple[int, int]  # step 2: (H, W) of the images training stored
    resize: bool  # step 2: True: every image is resized to image_size; False: it must have that size
    fit: Fit  # step 3: "center_crop" (a no-op when the sizes are equal) or "resize"
    input_size: tuple[int, int]  # step 3: the model's (H, W)
    padding_mode: PaddingMode = "constant"  # step 3: how a centre crop larger than the image pads it
    mean: tuple[float, ...] | None = None  # step 5, per channel on the 0–1 scale
    std: tuple[float, ...] | None = None

    def image(self, opened: Image.Image, where: str) -> np.ndarray:
        """Steps 1–2 for one opened image: uint8 (C, H, W) of image_size; DataError naming `where`
        when the model takes grey or RGB images only, or when the image has another size and
        training did not resize."""
        if self.channels not in (1, 3):
            raise DataError(
                f"the model takes {self.channels}-channel input; images are decoded as grey (1) or RGB (3) only"
            )
        if not self.resize:
            self.check_size(*opened.size, where)  # before decoding: the size is in the header
        array = decode(opened, self.channels, self.image_size if self.resize else None)
        return array.transpose(2, 0, 1)

    def check_size(self, width: int, height: int, where: str) -> None:
        """DataError naming `where` when a model trained without resizing is given an image of another size."""
        th, tw = self.image_size
        if (height, width) != (th, tw):
            into = f" (then {self.fit.replace('_', ' ')} to {self.input_size[1]}×{self.input_size[0]})"
            raise DataError(
                f"{where} is {width}×{height} but the model takes {tw}×{th} images"
                f"{into if self.input_size != self.image_size else ''} and was trained without resizing",
                hint=f"resize the image to {tw}×{th} first, or train with data.resize",
            )

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Steps 3–5: stored uint8 images (N, C, H, W) → the model's float32 input."""
        return prepare_batch(images, self.fit, self.input_size, self.mean, self.std, self.padding_mode)

    def to_json(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "image_size": list(self.image_size),
            "resize": self.resize,
            "fit": self.fit,
            "input_size": list(self.input_size),
            "padding_mode": self.padding_mode,
            "scale": PIXEL_SCALE,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Preprocessing:
        """The inverse of `to_json`, for values already checked (cnnspec.deploy.metadata checks them)."""
        mean, std = value["mean"], value["std"]
        return cls(
            channels=value["channels"],
            image_size=(value["image_size"][0], value["image_size"][1]),
            resize=value["resize"],
            fit=value["fit"],
            input_size=(value["input_size"][0], value["input_size"][1]),
            padding_mode=value["padding_mode"],
            mean=tuple(float(v) for v in mean) if mean is not None else None,
            std=tuple(float(v) for v in std) if std is not None else None,
        )


def stored_size(spec: Spec) -> tuple[tuple[int, int], bool]:
    """(H, W) of the images training stores for `spec`, and whether they were resized to it:
    data.resize when given; otherwise the dataset's own size, or the model's input for synthetic data
    and for image folders, whose files can have any size and are all resized to it."""
    from cnnspec.datasets import DATASETS
    from cnnspec.layers.base import pair

    _, h, w = spec.model.input.shape
    data = spec.data
    if data is None:
        return (h, w), False
    if data.resize is not None:
        return pair(data.resize), True
    if DATASETS[data.dataset.name].streamed:
        return (h, w), True
    native = DATASETS[data.dataset.name].shape
    return ((native[1], native[2]) if native is not None else (h, w)), False


def preprocessing_for(spec: Spec, mean: Sequence[float] | None, std: Sequence[float] | None) -> Preprocessing:
    """The preprocessing of a run: its spec (data.resize, the dataset, the augmentations) and its
    normalisation (run.json's mean and std)."""
    c, h, w = spec.model.input.shape
    size, resized = stored_size(spec)
    fit = evaluation_fit([item.op for item in spec.data.augment] if spec.data is not None else [])
    return Preprocessing(
        channels=c,
        image_size=size,
        resize=resized,
        fit=fit.fit if fit is not None else "center_crop",
        input_size=(h, w),
        padding_mode=fit.padding_mode if fit is not None else "constant",
        mean=tuple(float(v) for v in mean) if mean is not None else None,
        std=tuple(float(v) for v in std) if std is not None else None,
    )
