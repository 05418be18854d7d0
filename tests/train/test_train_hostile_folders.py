"""Hostile image folders (issue 14, items 5, 7, 8, 14, 15, 16): real files, real processes, real signals.

Each case that used to hang or end in a traceback runs the real `cnnspec` console script in a
subprocess with a timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnspec.errors import DataError
from cnnspec.training.sources import FolderSource, TensorSource, _FolderImages, channel_stats, image_files
from tests.train._train_helpers import THREADS_ENV

CNNSPEC = [sys.executable, "-m", "cnnspec"]


def _folder(root: Path, per_class: int = 3, size: int = 8, classes: tuple[str, ...] = ("cat", "dog")) -> None:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "train" / name / f"{i}.png")


def _spec(root: Path, *, workers: int = 0, epochs: int = 1, size: int = 8, cache: str = "none") -> Path:
    path = root / "spec.yaml"
    path.write_text(
        f"""name: folder
model:
  input: {{channels: 1, height: {size}, width: {size}}}
  layers:
    - conv2d: {{out_channels: 4, kernel_size: 3, padding: 1}}
    - relu
    - flatten
    - linear: {{out_features: 2}}
data:
  dataset: {{name: image_folder, root: '{root}'}}
  resize: {size}
  batch_size: 2
  val_split: 0
  num_workers: {workers}
  cache: {cache}  # none, streamed: these tests are about the DataLoader's workers
train: {{epochs: {epochs}}}
""",
        encoding="utf-8",
    )
    return path


def _train(spec: Path, out: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **THREADS_ENV}
    return subprocess.run(
        [*CNNSPEC, "train", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        errors="backslashreplace",
    )


def _nothing_written(out: Path) -> bool:
    return not any((out / name).exists() for name in ("spec.yaml", "run.json", "checkpoints", "samples"))


# --- item 14: special files -----------------------------------------------------------------


def test_a_fifo_named_png_is_refused_by_train_without_opening_it(tmp_path: Path) -> None:
    _folder(tmp_path)
    fifo = tmp_path / "train" / "cat" / "pipe.png"
    os.mkfifo(fifo)
    out = tmp_path / "run"
    result = _train(_spec(tmp_path), out, timeout=90)  # it used to block in open() forever
    assert result.returncode == 1, result.stderr
    assert f"{fifo}: a named pipe (FIFO), not a regular file" in result.stderr
    assert "Traceback" not in result.stderr
    assert _nothing_written(out)


def test_a_socket_named_png_is_refused(tmp_path: Path) -> None:
    _folder(tmp_path)
    path = tmp_path / "train" / "dog" / "s.png"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(DataError, match=r"s\.png: a socket, not a regular file"):
            image_files(tmp_path / "train", tmp_path)


def test_a_fifo_swapped_in_after_listing_is_refused_at_open(tmp_path: Path) -> None:
    """The worker opens non-blocking and checks the open descriptor: a race cannot make it block."""
    _folder(tmp_path)
    _, items = image_files(tmp_path / "train", tmp_path)
    victim = Path(items[0][0])
    victim.unlink()
    os.mkfifo(victim)
    with pytest.raises(DataError, match="a named pipe"):
        _FolderImages(items, channels=1, size=(8, 8))[0]


# --- item 8: symbolic links -----------------------------------------------------------------


def test_a_symlink_loop_is_refused_not_walked(tmp_path: Path) -> None:
    _folder(tmp_path)
    os.symlink("..", tmp_path / "train" / "cat" / "loop")
    with pytest.raises(DataError) as caught:
        image_files(tmp_path / "train", tmp_path)
    assert "train/cat/loop: leads to" in str(caught.value)
    assert "a folder already read" in str(caught.value)


def test_a_link_out_of_the_root_is_refused_before_it_is_walked(tmp_path: Path) -> None:
    _folder(tmp_path)
    os.symlink("/usr", tmp_path / "train" / "dog" / "usr")
    with pytest.raises(DataError, match="a symbolic link to /usr, outside the dataset root"):
        image_files(tmp_path / "train", tmp_path)


def test_links_inside_the_root_are_followed_once(tmp_path: Path) -> None:
    _folder(tmp_path)
    extra = tmp_path / "extra_cats"
    extra.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(extra / "x.png")
    os.symlink("../../extra_cats", tmp_path / "train" / "cat" / "more")
    classes, items = image_files(tmp_path / "train", tmp_path)
    assert classes == ["cat", "dog"]
    paths = [Path(p).relative_to(tmp_path / "train").as_posix() for p, _ in items]
    assert paths == ["cat/0.png", "cat/1.png", "cat/2.png", "cat/more/x.png", "dog/0.png", "dog/1.png", "dog/2.png"]
    assert [label for _, label in items] == [0, 0, 0, 0, 1, 1, 1]


def test_a_second_path_to_another_class_is_refused(tmp_path: Path) -> None:
    """`train/cat/dogs -> ../dog` would label every dog both cat and dog."""
    _folder(tmp_path)
    os.symlink("../dog", tmp_path / "train" / "cat" / "dogs")
    with pytest.raises(DataError, match=r"cat/dogs: leads to .*a folder already read"):
        image_files(tmp_path / "train", tmp_path)


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_one_image_file_in_two_classes_is_refused(tmp_path: Path, link: str) -> None:
    """A hard link (or a link to a file) puts one image under two labels; whichever it trains as is wrong."""
    _folder(tmp_path)
    (os.link if link == "hard" else os.symlink)(
        tmp_path / "train" / "cat" / "0.png", tmp_path / "train" / "dog" / "9.png"
    )
    with pytest.raises(DataError, match=r"dog/9.png: the same file as .*cat/0.png, in the class cat: one image with"):
        image_files(tmp_path / "train", tmp_path)


def test_one_image_file_twice_in_one_class_is_listed(tmp_path: Path) -> None:
    """Two paths to one file within a class give the same label: no wrong answer, listed as found."""
    _folder(tmp_path)
    os.link(tmp_path / "train" / "cat" / "0.png", tmp_path / "train" / "cat" / "9.png")
    _, items = image_files(tmp_path / "train", tmp_path)
    assert [label for _, label in items] == [0, 0, 0, 0, 1, 1, 1]


def test_an_empty_image_file_is_named_as_empty(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "train" / "dog" / "empty.png").write_bytes(b"")
    proc = _train(_spec(tmp_path), tmp_path / "run")
    assert proc.returncode == 1, proc.stderr
    assert "dog/empty.png: cannot read this image (an empty file (0 bytes))" in proc.stderr, proc.stderr
    assert "BufferedReader" not in proc.stderr


@pytest.mark.parametrize("made", ["a file", "an empty folder"])
def test_a_test_split_that_is_not_a_folder_of_images_is_refused_not_dropped(tmp_path: Path, made: str) -> None:
    _folder(tmp_path)
    if made == "a file":
        (tmp_path / "test").write_text("not a folder")
        said = "test is not a folder: ROOT/test/ holds the test split's class folders"
    else:
        (tmp_path / "test").mkdir()
        said = "test holds no images: ROOT/test/CLASS/ holds the test split"
    proc = _train(_spec(tmp_path), tmp_path / "run")
    assert proc.returncode == 1 and said in proc.stderr, proc.stderr
    assert _nothing_written(tmp_path / "run")


# --- item 5: class folder names that are not UTF-8 ------------------------------------------


def test_a_class_folder_name_that_is_not_utf8_is_refused_before_training(tmp_path: Path) -> None:
    _folder(tmp_path)
    bad = os.path.join(os.fsencode(tmp_path / "train"), b"caf\xe9")
    os.mkdir(bad)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(os.fsdecode(os.path.join(bad, b"0.png")))
    out = tmp_path / "run"
    result = _train(_spec(tmp_path), out)
    assert result.returncode == 1, result.stderr
    assert "train/caf\\xe9: a class folder whose name is not valid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr
    assert _nothing_written(out)


# --- item 7: image modes and normalisation --------------------------------------------------


def _decode(path: Path, channels: int = 1, size: tuple[int, int] = (4, 6)) -> np.ndarray:
    image, _ = _FolderImages([(str(path), 0)], channels=channels, size=size)[0]
    return image.permute(1, 2, 0).numpy()


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    levels = np.array([[0, 257, 4112, 32896, 65535, 65535]] * 4, dtype=np.uint16)  # 0, 1, 16, 128, 255 ×257
    expected = (levels // 257).astype(np.uint8)[:, :, None]
    Image.fromarray(levels).save(tmp_path / "a16.png")
    assert Image.open(tmp_path / "a16.png").mode == "I;16"
    assert (_decode(tmp_path / "a16.png") == expected).all()  # was 255 wherever the value was over 255
    Image.fromarray(levels.astype(np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert (_decode(tmp_path / "i.tif") == expected).all()
    floats = (levels / 65535.0).astype(np.float32)
    Image.fromarray(floats).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert (_decode(tmp_path / "f.tif") == expected).all()
    rgb = _decode(tmp_path / "a16.png", channels=3)
    assert rgb.shape == (4, 6, 3) and (rgb == expected).all()


def test_8_bit_modes_with_alpha_palette_and_cmyk_decode_to_their_colours(tmp_path: Path) -> None:
    grey = np.array([[10, 20, 30, 40, 50, 60]] * 4, dtype=np.uint8)
    alpha = np.full_like(grey, 7)
    Image.fromarray(np.dstack([grey, alpha]), mode="LA").save(tmp_path / "la.png")
    assert (_decode(tmp_path / "la.png")[:, :, 0] == grey).all()
    rgba = np.dstack([grey, grey // 2, 255 - grey, alpha])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    assert (_decode(tmp_path / "rgba.png", channels=3) == rgba[:, :, :3]).all()
    palette = Image.new("P", (6, 4))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, 1 blue
    palette.putdata([0, 1, 0, 1, 0, 1] * 4)
    palette.save(tmp_path / "p.png")
    decoded = _decode(tmp_path / "p.png", channels=3)
    assert decoded[0, 0].tolist() == [255, 0, 0] and decoded[0, 1].tolist() == [0, 0, 255]
    cmyk = Image.new("CMYK", (6, 4), (255, 0, 0, 0))  # pure cyan
    cmyk.save(tmp_path / "c.tif")
    assert (_decode(tmp_path / "c.tif", channels=3) == np.array([0, 255, 255])).all()


def test_a_constant_channel_gets_std_one_and_a_warning() -> None:
    x = torch.randint(0, 256, (20, 3, 5, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    x[:, 1] = 77  # constant
    x[:, 2] = 200
    x[0, 2, 0, 0] = 201  # one grey level once: std 0.0002 (1/255 = 0.0039)
    said: list[str] = []
    mean, std = channel_stats(TensorSource(x, torch.zeros(20, dtype=torch.long)), batch_size=7, warn=said.append)
    assert std[1] == 1.0 and std[2] == 1.0  # was 1e-6 and 2e-4: a one-level change became 4,000 or 20 units
    assert abs(mean[1] - 77 / 255) < 1e-12
    direct = x[:, 0].double().div(255).std(unbiased=False).item()
    assert abs(std[0] - direct) < 1e-9
    assert len(said) == 1 and "channels 1 (mean" in said[0] and "2 (mean" in said[0]


def test_train_says_when_a_channel_is_constant(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 90, dtype=np.uint8)).save(tmp_path / "train" / name / f"{i}.png")
    proc = _train(_spec(tmp_path), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "channels 0 (mean" in proc.stderr or "channel 0 (mean" in proc.stderr
    assert "hardly vary over the training set; normalised with std 1" in proc.stderr


# --- items 15 and 16: worker errors, bombs, dead workers -------------------------------------


def test_a_corrupt_header_is_found_before_the_run_directory_is_written(tmp_path: Path) -> None:
    _folder(tmp_path)
    bad = tmp_path / "train" / "dog" / "bad.png"
    bad.write_bytes(b"not an image at all")
    out = tmp_path / "run"
    result = _train(_spec(tmp_path, workers=2), out)
    assert result.returncode == 1, result.stderr
    assert f"{bad}: cannot read this image" in result.stderr
    assert "Traceback" not in result.stderr
    assert _nothing_written(out)


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_a_worker_error_reaches_the_user_in_its_own_words(tmp_path: Path, cache: str) -> None:
    """A JPEG cut after its header passes the header check and fails in a DataLoader worker (or in a
    decoding thread, with the folder held in memory: then before the run directory is written)."""
    _folder(tmp_path)
    good = tmp_path / "whole.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)).save(good, quality=90)
    cut = tmp_path / "train" / "cat" / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:400])
    result = _train(_spec(tmp_path, workers=2, cache=cache), tmp_path / "run")
    assert result.returncode == 1, result.stderr
    assert f"{cut}: cannot read this image" in result.stderr
    assert "Caught DataError" not in result.stderr and "Traceback" not in result.stderr
    if cache == "memory":
        assert _nothing_written(tmp_path / "run")


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    _folder(tmp_path)
    bomb = tmp_path / "train" / "cat" / "bomb.png"
    bomb.write_bytes(_png_header(100_000, 100_000))  # 10^10 pixels claimed by a 70-byte file
    result = _train(_spec(tmp_path), tmp_path / "run")
    assert result.returncode == 1, result.stderr
    assert f"{bomb}: refused as a possible decompression bomb" in result.stderr
    assert "Traceback" not in result.stderr


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to find the worker processes")
def test_a_killed_dataloader_worker_is_a_clear_error(tmp_path: Path) -> None:
    _folder(tmp_path, per_class=40, size=64)
    spec = _spec(tmp_path, workers=2, epochs=500, size=64)
    env = {**os.environ, **THREADS_ENV}
    proc = subprocess.Popen(
        [*CNNSPEC, "train", str(spec), "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        workers: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            if (tmp_path / "run" / "checkpoints" / "last.state.pt").exists():  # training is under way
                workers = _children(proc.pid)
                if workers:
                    break
            time.sleep(0.02)
        assert workers, "no DataLoader worker appeared"
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr
    assert "error: a data loading worker process died" in stderr
    assert "Traceback" not in stderr


def test_folder_source_check_files_lists_every_bad_file(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"junk")
    source = FolderSource([(str(tmp_path / "a.png"), 0), (str(tmp_path / "b.png"), 0)], channels=1, size=(8, 8))
    with pytest.raises(DataError) as caught:
        source.check_files()
    assert len(caught.value.diagnostics) == 2
