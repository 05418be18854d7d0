"""An image folder held in memory (`data.cache`): every image decoded once, in parallel, and kept as
one uint8 tensor per split, augmented per batch like the built-in datasets; and the on-disk cache of
those tensors (`data.cache_dir`), so that a second run of a spec decodes nothing.

Decoding goes through the streamed path's own decoder (`cnnspec.training.sources._FolderImages`,
steps 1–2 of `cnnspec.preprocess`), so the tensors are the bytes streaming would give, image for
image: evaluate, export's gate, predict and bench read the same definition.

The disk cache holds one safetensors file per folder (ROOT/train, ROOT/val, ROOT/test), named by a
hash of the folder's path and the SHA-256 of its key: the folder, every file's path (relative to the
folder), class, size and modification time (ns), the decoded size and channel count, the Pillow
version (its resize is step 2), and the format below. A changed, added or removed file changes the
key, so the old file is not read. A file that cannot be read, or whose tensors do not hash to the
digest it records, or do not have the shape and labels the key says, is ignored with a warning and
rebuilt: it is never trusted. A folder's earlier file is removed when its new one is written: one
file per folder stays.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnspec.atomic import atomic_write_with
from cnnspec.checker.memory import format_bytes
from cnnspec.errors import DataError
from cnnspec.spec.model import DataSpec, Spec
from cnnspec.spec.paths import resolve_in
from cnnspec.terminal import printable
from cnnspec.training.sources import TensorSource, _FolderImages

# Bumped when what a cache file holds or how its key is made changes: older files are then not read.
CACHE_FORMAT = 1
# data.cache auto: an image folder is held in memory when its decoded splits take at most this share
# of the free memory of the training device (and of the host's, where they are decoded first). The
# rest is left to the model, its batches and everything else the machine runs.
MEMORY_FRACTION = 0.25
# Decoding threads: Pillow releases the GIL while it decodes and resizes, so threads run in parallel.
MAX_DECODE_THREADS = 8
CACHE_DIR_ENV = "CNNSPEC_CACHE_DIR"

Items = Sequence[tuple[str, int]]


@dataclass
class DecodedFolder(TensorSource):
    """A split of an image folder decoded into memory. Distributed runs shard it as they shard a
    streamed folder (torch's DistributedSampler), so the cache setting does not change the order."""

    def to(self, device: torch.device) -> DecodedFolder:
        return DecodedFolder(self.images.to(device), self.labels.to(device))


@dataclass
class CacheReport:
    """What `data.cache` chose and what the disk cache did: one line of the train log."""

    memory: bool
    reason: str  # why memory or streaming was chosen
    disk: dict[str, str] = field(default_factory=dict)  # folder name -> "read" | "written" | "rebuilt"
    where: Path | None = None  # the cache folder, when one was used

    def message(self) -> str:
        if not self.memory:
            return f"data.cache: streaming the image folder from disk ({self.reason})"
        done = ", ".join(f"{name} {what}" for name, what in self.disk.items())
        disk = f"; disk cache {printable(str(self.where))}: {done}" if self.where is not None else ""
        return f"data.cache: image folder held in memory ({self.reason}){disk}"


def decoded_bytes(images: int, channels: int, size: tuple[int, int]) -> int:
    """Bytes of `images` decoded uint8 images of `channels`×`size`."""
    return images * channels * size[0] * size[1]


def choose_memory(data: DataSpec, total: int, available: Sequence[int | None]) -> tuple[bool, str]:
    """Whether to hold the folder in memory, and why: `total` decoded bytes against each free-memory
    figure in `available` (the host's, the training device's; None where unknown)."""
    size = format_bytes(total)
    if data.cache == "none":
        return False, "data.cache: none"
    if data.cache == "memory":
        return True, f"data.cache: memory, {size}"
    known = [free for free in available if free is not None]
    if not known:
        return False, f"auto: {size} decoded, and the free memory is not known"
    budget = int(min(known) * MEMORY_FRACTION)
    if total <= budget:
        return True, f"auto: {size} decoded, within a quarter of the free memory ({format_bytes(budget)})"
    return False, f"auto: {size} decoded is more than a quarter of the free memory ({format_bytes(budget)})"


def decode_all(items: Items, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Every image of `items` decoded by the streamed path's decoder: uint8 (N, C, H, W)."""
    decoder = _FolderImages(items, channels, size)
    out = torch.empty((len(items), channels, *size), dtype=torch.uint8)

    def one(index: int) -> None:
        out[index] = decoder[index][0]

    threads = max(1, min(MAX_DECODE_THREADS, os.cpu_count() or 1, len(items)))
    with ThreadPoolExecutor(threads, thread_name_prefix="cnnspec-decode") as pool:
        for done in pool.map(one, range(len(items))):  # the first DataError, in file order, is raised
            del done
    return out


def cache_folder(spec: Spec) -> Path | None:
    """The folder data.cache_dir names (None: no disk cache)."""
    assert spec.data is not None
    value = spec.data.cache_dir
    if value == "none":
        return None
    if value != "auto":
        return resolve_in(spec, value)
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cnnspec" / "decoded"


def cache_key(folder: Path, items: Items, channels: int, size: tuple[int, int]) -> str:
    """The SHA-256 naming a folder's cache file (the module docstring lists what goes in)."""
    import PIL

    digest = hashlib.sha256()
    head = {"format": CACHE_FORMAT, "folder": str(folder), "channels": channels, "size": list(size)}
    head["pillow"] = PIL.__version__
    digest.update(json.dumps(head, sort_keys=True).encode())
    for path, label in items:
        st = os.stat(path)
        entry = [os.path.relpath(path, folder), label, st.st_size, st.st_mtime_ns]
        digest.update(json.dumps(entry).encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def _digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_cached(path: Path, items: Items, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """The images a cache file holds; ValueError (saying why) when it is damaged or is not this folder's."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as opened:  # type: ignore[no-untyped-call]
            meta = opened.metadata() or {}
            images, labels = opened.get_tensor("images"), opened.get_tensor("labels")
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ValueError(f"cannot be read ({printable(str(exc).splitlines()[0] if str(exc) else exc)})") from None
    want = torch.tensor([label for _, label in items], dtype=torch.int64)
    if images.dtype != torch.uint8 or tuple(images.shape) != (len(items), channels, *size):
        raise ValueError(f"holds images of {tuple(images.shape)} {images.dtype}, not {len(items)}×{channels}×{size}")
    if labels.dtype != torch.int64 or not torch.equal(labels, want):
        raise ValueError("its labels are not the folder's")
    if meta.get("sha256") != _digest(images, labels):
        raise ValueError("its contents do not match the digest it records")
    return images


def write_cached(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write a cache file atomically: a reader sees the old file or the whole new one."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {"images": images.contiguous(), "labels": labels.contiguous()}
    meta = {"sha256": _digest(images, labels), "format": str(CACHE_FORMAT)}
    try:
        atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    except SafetensorError as exc:  # safetensors' own error for a failed write (a full disk): an OSError here
        raise OSError(str(exc)) from None


def is_cached(path: Path) -> bool:
    """Whether the disk cache holds `path`; a folder that cannot be searched (another user's) holds nothing."""
    try:
        return path.is_file()
    except OSError:
        return False


def cache_file(folder: Path, items: Items, channels: int, size: tuple[int, int], where: Path | None) -> Path | None:
    """The file in the disk cache `where` that holds (or will hold) the folder's decoded images; None
    without a disk cache."""
    if where is None:
        return None
    prefix = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return where / f"{prefix}-{cache_key(folder, items, channels, size)}.safetensors"


def load_folder(
    name: str, path: Path | None, items: Items, channels: int, size: tuple[int, int], warn: Callable[[str], None]
) -> tuple[torch.Tensor, str]:
    """A folder's images decoded, from the disk cache file `path` (`cache_file`) when it holds them; and
    what the disk cache did ("read", "written", "rebuilt", or "decoded" without one)."""
    if path is None:
        return decode_all(items, channels, size), "decoded"
    done = "written"
    if is_cached(path):
        try:
            return read_cached(path, items, channels, size), "read"
        except ValueError as exc:
            warn(f"warning: the decoded-image cache {printable(str(path))} {exc}; decoding {name} again")
            done = "rebuilt"
        except OSError as exc:  # a file that cannot be read (another user's)
            reason = printable(exc.strerror or str(exc))
            warn(f"warning: the decoded-image cache {printable(str(path))} cannot be read ({reason}); decoding {name}")
            done = "rebuilt"
    images = decode_all(items, channels, size)
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    try:
        write_cached(path, images, labels)
    except OSError as exc:
        warn(f"warning: cannot write the decoded-image cache {printable(str(path))} ({printable(str(exc))})")
        return images, "not written"
    _remove_older(path)
    return images, done


def _remove_older(kept: Path) -> None:
    """Remove the folder's earlier cache files (its files as they were before a change): one file per
    folder stays. Only names cnnspec gives its cache files are touched (PREFIX-SHA256.safetensors)."""
    prefix = kept.name.split("-", 1)[0]
    with contextlib.suppress(OSError):
        for old in kept.parent.glob(f"{prefix}-*.safetensors"):
            key = old.name[len(prefix) + 1 : -len(".safetensors")]
            if old != kept and len(key) == 64 and all(c in "0123456789abcdef" for c in key) and old.is_file():
                with contextlib.suppress(OSError):
                    old.unlink()


def check_memory(data: DataSpec, total: int, available: Sequence[int | None]) -> None:
    """data.cache: memory asks for the whole folder in memory: refused when it cannot fit at all."""
    known = [free for free in available if free is not None]
    if data.cache == "memory" and known and total > min(known):
        raise DataError(
            f"data.cache: memory needs {format_bytes(total)} for the decoded images but "
            f"{format_bytes(min(known))} is free",
            hint="set data.cache: auto or none to stream the folder from disk",
        )
