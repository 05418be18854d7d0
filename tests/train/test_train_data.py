"""Datasets: digits split, synthetic data, image folders, offline errors, normalisation statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnspec.errors import DataError
from cnnspec.spec.load import loads
from cnnspec.training.datasets import load_data, make_synthetic, resize_uint8
from cnnspec.training.sources import FolderSource, TensorSource, channel_stats


def _spec(data: str, input_: str = "{channels: 1, height: 8, width: 8}", classes: int = 10) -> str:
    return f"""
name: t
model:
  input: {input_}
  layers:
    - flatten
    - linear: {{out_features: {classes}}}
data:
{data}
"""


def test_digits_split_is_fixed_and_stratified() -> None:
    spec = loads(_spec("  dataset: {name: digits}\n  val_split: 0.1"))
    a, b = load_data(spec), load_data(spec)
    assert isinstance(a.train, TensorSource) and isinstance(a.test, TensorSource) and isinstance(a.val, TensorSource)
    assert (len(a.train), len(a.val), len(a.test)) == (1293, 144, 360)
    assert a.class_names == [str(i) for i in range(10)]
    assert isinstance(b.test, TensorSource) and isinstance(b.train, TensorSource)
    assert a.test.images.equal(b.test.images) and a.train.labels.equal(b.train.labels)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape[1:] == (1, 8, 8)
    assert int(a.train.images.max()) == 255
    counts = torch.bincount(a.test.labels, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified
    other_seed = loads(_spec("  dataset: {name: digits}\n  val_split: 0.1") + "train: {seed: 9}\n")
    c = load_data(other_seed)
    assert isinstance(c.test, TensorSource) and c.test.images.equal(a.test.images)  # the test set never moves
    assert isinstance(c.val, TensorSource) and not c.val.labels.equal(
        a.val.labels
    )  # the validation split follows the seed


def test_synthetic_is_deterministic_and_learnable_shaped() -> None:
    x1, y1 = make_synthetic((3, 6, 5), 50, 4, seed=1)
    x2, y2 = make_synthetic((3, 6, 5), 50, 4, seed=1)
    assert x1.equal(x2) and y1.equal(y2)
    assert x1.shape == (50, 3, 6, 5) and x1.dtype == torch.uint8
    assert set(y1.tolist()) <= {0, 1, 2, 3}
    # Images of one class are closer to each other than to other classes' (the prototype shows through).
    xf = x1.float().flatten(1)
    same = torch.cdist(xf[y1 == 0], xf[y1 == 0]).mean()
    other = torch.cdist(xf[y1 == 0], xf[y1 == 1]).mean()
    assert same < other


def test_synthetic_spec_uses_model_input_and_num_classes() -> None:
    spec = loads(
        _spec(
            "  dataset: {name: synthetic, num_samples: 100, num_classes: 3}\n  val_split: 0.2",
            "{channels: 3, height: 5, width: 7}",
            3,
        )
    )
    data = load_data(spec)
    assert isinstance(data.train, TensorSource)
    assert data.train.images.shape == (80, 3, 5, 7)
    assert data.val is not None and len(data.val) == 20
    assert data.test is not None and len(data.test) == 20
    assert data.class_names == ["0", "1", "2"]


def test_resize_once() -> None:
    x = (torch.rand(3, 1, 8, 8) * 255).to(torch.uint8)
    y = resize_uint8(x, (16, 12))
    assert y.shape == (3, 1, 16, 12) and y.dtype == torch.uint8
    assert resize_uint8(x, (8, 8)) is x


def test_offline_torchvision_dataset_is_a_clear_error(tmp_path: Path) -> None:
    spec = loads(
        _spec(
            f"  dataset: {{name: cifar10, root: '{tmp_path}', download: false}}", "{channels: 3, height: 32, width: 32}"
        )
    )
    with pytest.raises(DataError) as info:
        load_data(spec)
    diag = info.value.diagnostics[0]
    assert f"cifar10 is not in {tmp_path} and download is off" in diag.message
    assert diag.hint is not None and "cifar-10-batches-py" in diag.hint


def _write_folder(root: Path, split: str, per_class: int, rng: np.random.Generator) -> None:
    for cls, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        folder = root / split / cls
        folder.mkdir(parents=True)
        for i in range(per_class):
            size = (int(rng.integers(10, 20)), int(rng.integers(10, 20)))
            pixels = np.clip(rng.normal(colour, 20, size=(*size[::-1], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_streams_resized_uint8_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _write_folder(tmp_path, "train", 10, rng)
    _write_folder(tmp_path, "test", 3, rng)
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    spec = loads(
        _spec(
            f"  dataset: {{name: image_folder, root: '{tmp_path}'}}\n"
            "  resize: [6, 5]\n  val_split: 0.2\n  num_workers: 2\n  cache: none",
            "{channels: 3, height: 6, width: 5}",
            2,
        )
    )
    data = load_data(spec)
    assert data.class_names == ["cat", "dog"]
    assert isinstance(data.train, FolderSource) and not data.in_memory
    assert (len(data.train), len(data.val or []), len(data.test or [])) == (16, 4, 6)
    batches = list(data.train.batches(torch.arange(16).flip(0), 5, torch.device("cpu"), start=1))
    assert [len(y) for _, y in batches] == [5, 5, 1]
    images, labels = batches[0]
    assert images.shape == (5, 3, 6, 5) and images.dtype == torch.uint8
    # Red cats, blue dogs: the decoded pixels say which class each image is.
    red = images[:, 0].float().mean(dim=(1, 2)) > images[:, 2].float().mean(dim=(1, 2))
    assert red.tolist() == [bool(label == 0) for label in labels.tolist()]


def test_image_folder_errors(tmp_path: Path) -> None:
    spec = loads(
        _spec(
            f"  dataset: {{name: image_folder, root: '{tmp_path}'}}\n  resize: 8",
            "{channels: 3, height: 8, width: 8}",
            2,
        )
    )
    with pytest.raises(DataError, match=r"no .*train folder"):
        load_data(spec)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no images in"):
        load_data(spec)
    (tmp_path / "train" / "a").mkdir()
    with pytest.raises(DataError, match="train/a: a class folder with no images"):
        load_data(spec)


def test_channel_stats_match_a_direct_computation() -> None:
    x = (torch.rand(37, 3, 5, 4, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    mean, std = channel_stats(TensorSource(x, torch.zeros(37, dtype=torch.long)), batch_size=10)
    f = x.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), f.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), f.std(dim=(0, 2, 3), unbiased=False))


def test_a_two_channel_model_trains_and_writes_no_sample_images(tmp_path: Path) -> None:
    """A PNG holds grey or RGB: for other channel counts the samples folder stays empty (no crash)."""
    import cnnspec

    spec = tmp_path / "two.yaml"
    spec.write_text(
        "name: two\nmodel:\n  input: {channels: 2, height: 8, width: 8}\n"
        "  layers: [conv2d: {out_channels: 4, kernel_size: 3}, global_avgpool, linear: {out_features: 4}]\n"
        "data: {dataset: {name: synthetic, num_samples: 16, num_classes: 4}, batch_size: 8}\n"
        "train: {epochs: 1}\n",
        encoding="utf-8",
    )
    run = cnnspec.train(spec, out=tmp_path / "run", progress=False)
    assert (run / "result.json").is_file()
    assert list((run / "samples").iterdir()) == []
