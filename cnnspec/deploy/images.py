"""Image files → the normalised (N, C, H, W) float32 batch an exported model expects (no torch).

The steps are the ones training used (and that the ONNX metadata records): decode with
Pillow, convert to grey ("L") or RGB to match the input channels (alpha is dropped),
resize to the model's H×W with bilinear filtering when training resized (`resize` in
the metadata), scale pixels to 0–1, then subtract `mean` and divide by `std`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cnnspec.deploy.metadata import ModelMetadata
from cnnspec.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def image_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the images directly inside each folder (sorted by name)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(
                    f"{p} holds no images",
                    hint=f"put {', '.join(sorted(IMAGE_SUFFIXES))} files in it (not in subfolders)",
                )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"no such file or folder: {p}")
    return files


def load_image(path: str | Path, meta: ModelMetadata) -> np.ndarray:
    """One image as a normalised (C, H, W) float32 array."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if meta.channels not in (1, 3):
        raise DataError(
            f"the model takes {meta.channels}-channel input; predict decodes grey (1) or RGB (3) images only"
        )
    try:
        with Image.open(p) as opened:
            opened.load()
            image = opened.convert("L" if meta.channels == 1 else "RGB")
    except Image.DecompressionBombError as exc:  # Pillow's own limit on pixels (Image.MAX_IMAGE_PIXELS)
        raise DataError(
            f"{p} is refused: {exc}",
            hint="an image this large is more likely a decompression bomb than a photo; shrink it first",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{p} is not an image Pillow can decode: {exc}") from None
    want = (meta.width, meta.height)
    if image.size != want:
        if meta.resize is None:
            raise DataError(
                f"{p} is {image.size[0]}×{image.size[1]} but the model takes {meta.width}×{meta.height} "
                "and was trained without resizing",
                hint=f"resize the image to {meta.width}×{meta.height} first, or train with data.resize",
            )
        image = image.resize(want, Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / meta.pixel_scale
    chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, H, W)
    return normalise(chw, meta)


def normalise(chw: np.ndarray, meta: ModelMetadata) -> np.ndarray:
    """(x − mean) / std per channel, as in training; unchanged when the model has no normalisation."""
    if meta.mean is None or meta.std is None:
        return np.ascontiguousarray(chw, dtype=np.float32)
    mean = np.asarray(meta.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(meta.std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((chw - mean) / std, dtype=np.float32)


def load_batch(paths: Iterable[str | Path], meta: ModelMetadata) -> np.ndarray:
    """Images stacked into an (N, C, H, W) float32 batch."""
    arrays = [load_image(p, meta) for p in paths]
    if not arrays:
        return np.zeros((0, *meta.input_shape), dtype=np.float32)
    return np.stack(arrays)
