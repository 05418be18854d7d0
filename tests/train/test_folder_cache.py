"""data.cache: an image folder decoded once into memory gives the bytes streaming gives, trains on the
same first batch, and its disk cache is read on a second run, rebuilt when a file changes or the cache
file is damaged (cnnspec/training/folder_cache.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnspec
from cnnspec.errors import DataError
from cnnspec.spec.overrides import load_with_overrides
from cnnspec.training.callbacks import Callback, Step
from cnnspec.training.datasets import load_data
from cnnspec.training.folder_cache import DecodedFolder, check_memory, choose_memory
from cnnspec.training.progress import Reporter
from cnnspec.training.sources import FolderSource, Source


def _folder(root: Path) -> None:
    """ROOT/{train,test}/{a,b,c}/*.png: RGB, grey and palette images of several sizes (each is resized)."""
    rng = np.random.default_rng(7)
    for split, count in (("train", 10), ("test", 3)):
        for label, name in enumerate("abc"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = int(rng.integers(9, 20)), int(rng.integers(9, 20))
                pixels = rng.integers(0, 90, size=(h, w, 3)).astype(np.uint8)
                pixels[:, :, label] += 120
                image = Image.fromarray(pixels)
                if i % 3 == 1:
                    image = image.convert("L")
                elif i % 3 == 2:
                    image = image.convert("P")
                image.save(folder / f"{i}.png")


def _spec(tmp_path: Path, cache: str, cache_dir: str = "auto") -> Path:
    spec = tmp_path / f"spec_{cache}.yaml"
    spec.write_text(
        f"""
name: cached
model:
  input: {{channels: 3, height: 12, width: 12}}
  layers:
    - conv2d: {{out_channels: 4, kernel_size: 3, padding: 1}}
    - relu
    - global_avgpool
    - linear: {{out_features: 3}}
data:
  dataset: {{name: image_folder, root: '{tmp_path / "images"}'}}
  batch_size: 8
  val_split: 0.2
  num_workers: 0
  cache: {cache}
  cache_dir: '{cache_dir}'
  augment: [{{random_crop: {{size: 12, padding: 2}}}}, horizontal_flip]
optimizer: {{name: sgd, lr: 0.05}}
train: {{epochs: 1, seed: 5}}
"""
    )
    return spec


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    _folder(tmp_path / "images")
    return tmp_path / "images"


def _all(source: Source) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(source.batches(None, 7, torch.device("cpu")))
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_memory_holds_the_bytes_streaming_decodes(images: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    held = load_data(load_with_overrides(_spec(tmp_path, "memory", cache), []))
    streamed = load_data(load_with_overrides(_spec(tmp_path, "none"), []))
    assert held.in_memory and not streamed.in_memory
    assert isinstance(streamed.train, FolderSource) and isinstance(held.train, DecodedFolder)
    for split in ("train", "val", "test"):
        a, b = getattr(held, split), getattr(streamed, split)
        assert len(a) == len(b) > 0
        (xa, ya), (xb, yb) = _all(a), _all(b)
        assert xa.dtype == torch.uint8 and xa.shape == xb.shape
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # exact: the same decoder, image for image
    assert held.notes[0].startswith("data.cache: image folder held in memory (data.cache: memory")
    assert "data.cache: streaming the image folder from disk (data.cache: none)" in streamed.notes


class _FirstBatch(Callback):
    def __init__(self) -> None:
        self.images: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images is None:
            self.images, self.targets = images.clone(), targets.clone()
        return images, targets


class _Lines(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def test_a_memory_run_trains_on_the_streamed_run_s_first_batch(images: Path, tmp_path: Path) -> None:
    firsts = {}
    for cache in ("memory", "none"):
        first, lines = _FirstBatch(), _Lines()
        cnnspec.train(
            _spec(tmp_path, cache, str(tmp_path / "cache")),
            out=tmp_path / f"run_{cache}",
            progress=lines,
            callbacks=[first],
        )
        assert any(line.startswith("data.cache: ") for line in lines.lines)
        firsts[cache] = first
    assert firsts["memory"].images is not None and firsts["none"].images is not None
    # After the random crop and flip and normalisation: the same order, the same draws, the same pixels.
    assert torch.equal(firsts["memory"].images, firsts["none"].images)
    assert torch.equal(firsts["memory"].targets, firsts["none"].targets)  # type: ignore[arg-type]


def _disk(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith("data.cache: ")).split(": ", 2)[-1]


def test_the_disk_cache_is_read_on_a_second_run_and_rebuilt_when_a_file_changes(images: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = load_with_overrides(_spec(tmp_path, "memory", str(cache)), [])
    first = load_data(spec)
    assert first.notes[0].endswith("train written, test written")
    assert len(list(cache.glob("*.safetensors"))) == 2
    second = load_data(spec)
    assert second.notes[0].endswith("train read, test read")
    assert torch.equal(_all(first.train)[0], _all(second.train)[0])

    # A changed file (new content, a new modification time): that folder's cache is not read.
    changed = images / "test" / "b" / "1.png"
    Image.new("RGB", (10, 10), (255, 0, 255)).save(changed)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third = load_data(spec)
    assert third.notes[0].endswith("train read, test written")
    assert third.test is not None and first.test is not None
    assert not torch.equal(_all(third.test)[0], _all(first.test)[0])
    # Only the modification time: the key names it, so the folder is decoded again.
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    assert load_data(spec).notes[0].endswith("train read, test written")
    # A removed file.
    (images / "train" / "a" / "0.png").unlink()
    assert load_data(spec).notes[0].endswith("train written, test read")
    assert len(list(cache.glob("*.safetensors"))) == 2  # one file per folder: the earlier ones are removed


@pytest.mark.parametrize("damage", ["truncated", "bit flip"])
def test_a_damaged_cache_file_is_ignored_with_a_warning_and_rebuilt(images: Path, tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    spec = load_with_overrides(_spec(tmp_path, "memory", str(cache)), [])
    good = load_data(spec)
    files = sorted(cache.glob("*.safetensors"), key=lambda p: p.stat().st_size)
    big = files[-1]  # the train folder's
    data = bytearray(big.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[-5] ^= 0x10  # a pixel of the last image
    big.write_bytes(bytes(data))
    rebuilt = load_data(spec)
    assert rebuilt.notes[0].endswith("train rebuilt, test read")
    assert any(line.startswith("warning: the decoded-image cache ") for line in rebuilt.notes[1:])
    assert torch.equal(_all(rebuilt.train)[0], _all(good.train)[0])
    assert load_data(spec).notes[0].endswith("train read, test read")  # the rebuilt file is whole


def test_auto_chooses_by_the_budget(images: Path, tmp_path: Path) -> None:
    spec = load_with_overrides(_spec(tmp_path, "auto", "none"), [])
    assert spec.data is not None
    assert choose_memory(spec.data, 100, [400])[0]
    assert not choose_memory(spec.data, 101, [400])[0]  # a quarter of the free memory, at most
    assert not choose_memory(spec.data, 100, [400, 399])[0]  # the smaller of the host and the device
    assert not choose_memory(spec.data, 1, [None])[0]  # unknown: streamed
    held = load_data(spec)  # 39 tiny images: in memory on any machine that runs the suite
    assert held.in_memory and held.notes[0].startswith("data.cache: image folder held in memory (auto: ")


def test_memory_that_cannot_fit_is_refused(images: Path, tmp_path: Path) -> None:
    spec = load_with_overrides(_spec(tmp_path, "memory", "none"), [])
    assert spec.data is not None
    check_memory(spec.data, 400, [400])  # fits
    with pytest.raises(DataError, match=r"data\.cache: memory needs 401 B for the decoded images but 400 B is free"):
        check_memory(spec.data, 401, [None, 400])


def _damage_keeping_size_and_mtime(path: Path) -> None:
    """Zero the file's first bytes (the PNG signature), then give it back its modification time."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[:8] = bytes(8)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_folder_read_from_the_disk_cache_has_its_headers_not_opened_again(images: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = load_with_overrides(_spec(tmp_path, "memory", str(cache)), [])
    first = load_data(spec)
    # The same size and modification time: the disk cache's key is unchanged, so its decoded pixels are
    # what trains; opening the file again (what a cold cache does first) would refuse it.
    _damage_keeping_size_and_mtime(images / "train" / "a" / "0.png")
    second = load_data(spec)
    assert second.notes[0].endswith("train read, test read")
    assert torch.equal(_all(first.train)[0], _all(second.train)[0])
    # Without the disk cache the header is read, and the file refused.
    with pytest.raises(DataError, match=r"0\.png"):
        load_data(load_with_overrides(_spec(tmp_path, "memory", "none"), []))


def test_a_bad_test_image_is_named_before_the_train_folder_is_decoded(images: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (images / "test" / "c" / "2.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"2\.png"):
        load_data(load_with_overrides(_spec(tmp_path, "memory", str(cache)), []))
    assert not list(cache.glob("*.safetensors"))  # nothing decoded: the train folder's cache file is not written


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 KiB tmpfs: the test folder's train cache file (13 KiB of pixels) does not fit (root and mount(8) needed)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_for_the_cache_is_a_warning_and_the_run_goes_on(
    images: Path, tmp_path: Path, full_disk: Path
) -> None:
    spec = load_with_overrides(_spec(tmp_path, "memory", str(full_disk)), [])
    bundle = load_data(spec)
    assert bundle.in_memory and ": train not written, test " in bundle.notes[0]
    assert any(n.startswith("warning: cannot write the decoded-image cache ") for n in bundle.notes[1:])
    assert [p.name for p in full_disk.iterdir() if p.name.endswith(".tmp")] == []  # no partial file left


UNSEARCHABLE = """
import sys
from cnnspec.spec.overrides import load_with_overrides
from cnnspec.training.datasets import load_data
bundle = load_data(load_with_overrides(sys.argv[1], []))
print(bundle.notes[0])
print(*bundle.notes[1:], sep="\\n")
"""


def test_a_cache_folder_that_cannot_be_searched_is_decoded_around(images: Path, tmp_path: Path) -> None:
    # Another user's cache folder (mode 000): the run decodes, warns that it cannot write there, and trains.
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's permission to read any folder")
    cache = tmp_path / "theirs"
    cache.mkdir(mode=0o000)
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*drop, sys.executable, "-c", UNSEARCHABLE, str(_spec(tmp_path, "memory", str(cache)))],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    cache.chmod(0o700)
    assert done.returncode == 0, done.stderr
    first, *warnings = done.stdout.splitlines()
    assert first.endswith("train not written, test not written")
    assert warnings and all(w.startswith("warning: cannot write the decoded-image cache ") for w in warnings)
