"""Image files → the normalised (N, C, H, W) float32 batch an exported model expects (no torch).

The steps are the ones training and evaluation used, read from the ONNX metadata
(`preprocessing`) and carried out by the same functions (cnnspec.preprocess): decode with
Pillow and convert to grey or RGB (16-bit and float images scaled by their range), resize to
the size training stored when training resized, centre-crop (or pad, or resize) to the
model's H×W as evaluation does, scale to 0–1, then subtract `mean` and divide by `std`.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cnnspec.checker.weights import MISSING, what_is_at
from cnnspec.deploy.metadata import ModelMetadata
from cnnspec.errors import DataError
from cnnspec.preprocess import MAX_IMAGE_PIXELS

# The most pixels an image may have to be decoded for a model that resizes its input (one that does not
# takes its stored size only, checked before decoding too) is cnnspec's one image limit, training's too
# (cnnspec.preprocess.MAX_IMAGE_PIXELS). Image.open's decompression-bomb warning (at half of it) is silenced
# while Image.open runs, as training does; warnings filters are process-wide, so the (header-only, quick)
# open is serialised.
_OPENING = threading.Lock()


class ImageTooLarge(DataError):
    """An image whose header says it has more pixels than the model could use (`cnnspec serve`: 413)."""


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def image_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the images inside each folder (see `labelled_image_files`)."""
    return [path for path, _ in labelled_image_files(inputs)]


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def labelled_image_files(inputs: Iterable[str | Path]) -> list[tuple[Path, str | None]]:
    """Each image with its true class when its folder says it, else None.

    A file is itself (no class); a folder holding images is its images, sorted by name (no class); a
    folder holding no images but subfolders of them is a labelled folder, ROOT/CLASS/*.png as
    training's image_folder reads each split: every subfolder's images (sorted), of the class the
    subfolder names."""
    files: list[tuple[Path, str | None]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = _images_in(p)
            if found:
                files.extend((f, None) for f in found)
                continue
            classes = sorted(d for d in p.iterdir() if d.is_dir())
            labelled = [(f, d.name) for d in classes for f in _images_in(d)]
            if not labelled:
                raise DataError(
                    f"{p} holds no images",
                    hint=f"put {', '.join(sorted(IMAGE_SUFFIXES))} files in it, or in one subfolder per class "
                    "(ROOT/CLASS/*.png) to measure accuracy",
                )
            files.extend(labelled)
        elif p.is_file():
            files.append((p, None))
        else:
            what = what_is_at(p)  # a FIFO or a device is said as what it is, never opened
            if what == MISSING:
                raise DataError(f"no such file or folder: {p}")
            raise DataError(f"{p} is {what}, not an image file", hint="name image files, or folders of images")
    return files


def decode_image(path: str | Path, meta: ModelMetadata) -> np.ndarray:
    """Steps 1–2 of the model's preprocessing for one file: uint8 (C, H, W) of the size training stored."""
    p = Path(path)
    return _decode(p, str(p), meta)


def decode_bytes(data: bytes, meta: ModelMetadata, where: str) -> np.ndarray:
    """Steps 1–2 for an image held in memory (an upload to `cnnspec serve`), named `where` in errors:
    the same decoding as `decode_image`, so a file and its bytes give the same array."""
    return _decode(_Named(data, where), where, meta)


class _Named(io.BytesIO):
    """Bytes that Pillow's messages name as `where` (it shows a file object by its repr)."""

    def __init__(self, data: bytes, where: str) -> None:
        super().__init__(data)
        self.where = where

    def __repr__(self) -> str:
        return repr(self.where)


def _open(source: Path | BinaryIO) -> Any:
    """Pillow's lazy open (the header only); its DecompressionBombWarning (below cnnspec's limit) not printed,
    its DecompressionBombError (above it) raised."""
    from PIL import Image

    with _OPENING, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(source)


def check_pixels(width: int, height: int, where: str, meta: ModelMetadata) -> None:
    """Before a pixel is decoded: DataError for a size the model does not take (trained without resizing:
    its stored size only), ImageTooLarge over MAX_IMAGE_PIXELS."""
    pre = meta.image_preprocessing()
    if not pre.resize:
        pre.check_size(width, height, where)
    elif width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(
            f"{where} is {width}×{height} = {width * height:,} pixels; images of at most {MAX_IMAGE_PIXELS:,} "
            f"pixels are read (the model resizes them to {pre.image_size[1]}×{pre.image_size[0]})",
            hint="shrink the image first (training refuses it too)",
        )


def _decode(source: Path | BinaryIO, where: str, meta: ModelMetadata) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    preprocessing = meta.image_preprocessing()
    try:
        with _open(source) as opened:
            width, height = opened.size  # from the header: nothing decoded yet
            check_pixels(width, height, where, meta)
            opened.load()
            return preprocessing.image(opened, where)
    except Image.DecompressionBombError as exc:  # over the limit: Pillow refuses it from the header, in its words
        raise ImageTooLarge(
            f"{where} is refused: {exc}",
            hint=f"images of at most {MAX_IMAGE_PIXELS:,} pixels are read (training refuses it too); an image this"
            " large is more likely a decompression bomb than a photo: shrink it first",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{where} is not an image Pillow can decode: {exc}") from None


def load_image(path: str | Path, meta: ModelMetadata) -> np.ndarray:
    """One image as the model's normalised (C, H, W) float32 input."""
    return meta.image_preprocessing().prepare(decode_image(path, meta)[None])[0]


def load_batch(paths: Iterable[str | Path], meta: ModelMetadata) -> np.ndarray:
    """Images as the model's (N, C, H, W) float32 input batch."""
    return prepare_images([decode_image(p, meta) for p in paths], meta)


def prepare_images(images: list[np.ndarray], meta: ModelMetadata) -> np.ndarray:
    """Decoded images (`decode_image`, `decode_bytes`) as the model's (N, C, H, W) float32 input: steps 3–5."""
    if not images:
        return np.zeros((0, *meta.input_shape), dtype=np.float32)
    return meta.image_preprocessing().prepare(np.stack(images))
