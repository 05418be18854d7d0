"""One preprocessing definition (issue 14, items 6 and 7): evaluate, export's gate, predict and bench
bring an image to the model's input the same way, from real files, real trained runs, real sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnspec.export.exporter import export_run
from cnnspec.export.images import load_image
from cnnspec.export.metadata import ModelMetadata
from cnnspec.export.predict import predict
from cnnspec.run import load_trained
from cnnspec.train import evaluate_run, train
from cnnspec.train.augment import BatchAugment
from cnnspec.train.datasets import load_data
from cnnspec.train.sources import _FolderImages

# Two classes told apart by the side of a centred bright square: 8 or 10 pixels in a 20×20 image.
# Training sees random 16×16 crops of the 20×20 images, which never change the square's size;
# squashing the whole image to 16×16 instead (what predict used to do) makes a 10-pixel square
# 8 pixels wide, the other class's size.
SQUARES = """\
name: squares
model:
  input: {{channels: 1, height: 16, width: 16}}
  layers:
    - conv2d: {{out_channels: 8, kernel_size: 3, padding: 1}}
    - relu
    - maxpool2d: {{kernel_size: 2}}
    - flatten
    - linear: {{out_features: 2}}
data:
  dataset: {{name: image_folder, root: '{root}'}}
  resize: 20
  batch_size: 16
  val_split: 0
  num_workers: 0
  augment:
    - random_crop: {{size: 16}}
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: 3, seed: 0}}
"""


def _square(side: int, rng: np.random.Generator) -> np.ndarray:
    pixels = rng.integers(0, 40, (20, 20)).astype(np.uint8)  # a dark, noisy background
    top, left = 10 - side // 2 + int(rng.integers(-1, 2)), 10 - side // 2 + int(rng.integers(-1, 2))
    pixels[top : top + side, left : left + side] = rng.integers(200, 256)
    return pixels


def _squares_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 15)):
        for name, side in (("large", 10), ("small", 8)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(_square(side, rng)).save(folder / f"{i}.png")


def test_predict_on_the_test_folder_counts_what_evaluate_counts(tmp_path: Path) -> None:
    """The issue's Done criterion: resize 20 then random_crop 16; predict's confusion matrix on the
    test folder is evaluate's (it used to squash 20→16 and call most large squares small)."""
    _squares_folder(tmp_path / "images")
    spec = tmp_path / "squares.yaml"
    spec.write_text(SQUARES.format(root=tmp_path / "images"), encoding="utf-8")
    run = train(spec, tmp_path / "run", progress=False)
    exported = export_run(run)
    classes = exported.metadata.class_names
    matrix = [[0, 0], [0, 0]]
    for label, name in enumerate(classes):
        for p in predict(exported.path, [tmp_path / "images" / "test" / name], top_k=1).predictions:
            matrix[label][p.best.index] += 1
    # Training's own test pass (result.json) and `cnnspec evaluate` count what predict counts.
    tested = json.loads((run / "result.json").read_text(encoding="utf-8"))["test_accuracy"]
    assert tested >= 0.9  # the model tells the squares apart
    assert (matrix[0][0] + matrix[1][1]) / 30 == tested  # was 0.5: predict called every square small
    report = evaluate_run(run)  # used to end in a traceback: it fed the 20×20 images uncropped
    assert report["images"] == 30 and report["accuracy"] == tested
    assert matrix == report["confusion_matrix"]


DIGITS_PADDED = """\
name: digits-padded
model:
  input: {channels: 1, height: 12, width: 12}
  layers:
    - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
    - relu
    - maxpool2d: {kernel_size: 2}
    - flatten
    - linear: {out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 64
  val_split: 0
  augment:
    - random_crop: {size: 12, padding: 2}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 1, seed: 0}
"""


def test_predict_reads_the_runs_own_samples_when_the_model_input_is_larger(tmp_path: Path) -> None:
    """digits are 8×8, the model takes 12×12 (random_crop 12 with padding 2): evaluate pads each
    image by 2 on every side, and predict does the same to RUN/samples (it used to refuse them)."""
    spec = tmp_path / "digits.yaml"
    spec.write_text(DIGITS_PADDED, encoding="utf-8")
    run = train(spec, tmp_path / "run", progress=False)
    exported = export_run(run)
    samples = sorted((run / "samples").glob("*.png"))
    result = predict(exported.path, [run / "samples"], top_k=10)
    assert [Path(p.file) for p in result.predictions] == samples
    # Evaluate's input for the same test images, from the dataset itself, through the run's torch model.
    trained = load_trained(run)
    test = load_data(trained.spec, need_train=False).test
    assert test is not None
    indices = [int(f.stem.rsplit("_idx", 1)[1]) for f in samples]
    images = torch.stack([test.sample(i)[0] for i in indices])  # (N, 1, 8, 8) uint8
    prepare = BatchAugment(
        [item.op for item in trained.spec.data.augment],  # type: ignore[union-attr]
        channels=1,
        mean=trained.info.mean,
        std=trained.info.std,
        num_classes=10,
        device=torch.device("cpu"),
    ).normalize
    x = prepare(images)
    assert x.shape == (len(samples), 1, 12, 12)
    assert (x[:, :, :2] == x[0, 0, 0, 0]).all() and (x[:, :, :, -2:] == x[0, 0, 0, 0]).all()  # the padding
    with torch.no_grad():
        want = trained.model(x).numpy()
    got = np.array([[s.logit for s in sorted(p.top, key=lambda s: s.index)] for p in result.predictions])
    assert np.abs(got - want).max() <= 1e-4


# --- item 7: every PIL mode, the same pixels in training and in predict ----------------------


def _mode_image(mode: str, size: tuple[int, int]) -> Image.Image:
    """A real image of `mode` with a gradient in it, (width, height) `size`."""
    w, h = size
    ramp = np.arange(w * h, dtype=np.float64).reshape(h, w) / (w * h - 1)  # 0..1
    grey8 = np.rint(ramp * 255).astype(np.uint8)
    rgb8 = np.dstack([grey8, grey8[::-1], 255 - grey8])
    if mode in ("I;16", "I;16B"):
        return Image.fromarray(np.rint(ramp * 65535).astype(np.uint16)).convert(mode)
    if mode == "I":
        return Image.fromarray(np.rint(ramp * 65535).astype(np.int32))
    if mode == "F":
        return Image.fromarray(ramp.astype(np.float32))
    if mode == "1":
        return Image.fromarray(grey8).convert("1")
    if mode == "P":
        return Image.fromarray(rgb8, mode="RGB").quantize(16)
    if mode in ("LA", "RGBA"):
        base = Image.fromarray(grey8, mode="L") if mode == "LA" else Image.fromarray(rgb8, mode="RGB")
        return Image.merge(mode, [*base.split(), Image.fromarray(grey8[::-1], mode="L")])
    return Image.fromarray(rgb8, mode="RGB").convert(mode)  # L, RGB, CMYK, YCbCr, LAB


MODES = {"1": "png", "L": "png", "P": "png", "RGB": "png", "RGBA": "png", "LA": "png", "I;16": "png"}
MODES |= {"I": "tif", "I;16B": "tif", "F": "tif", "CMYK": "tif", "YCbCr": "tif", "LAB": "tif"}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_training_and_predict_decode_every_mode_to_the_same_input(tmp_path: Path, mode: str, channels: int) -> None:
    """A file of each mode PIL opens, at the stored size and at another size (resized): the image
    folder decoder then evaluation's normalisation give exactly predict's input."""
    mean, std = [0.5] * channels, [0.25] * channels
    meta = ModelMetadata(input_shape=[channels, 6, 6], class_names=["a"], mean=mean, std=std, resize=[6, 6])
    evaluation = BatchAugment([], channels=channels, mean=mean, std=std, num_classes=1, device=torch.device("cpu"))
    for size in ((6, 6), (9, 7)):
        path = tmp_path / f"{size[0]}x{size[1]}.{MODES[mode]}"
        _mode_image(mode, size).save(path)
        assert Image.open(path).mode == mode
        decoded, _ = _FolderImages([(str(path), 0)], channels=channels, size=(6, 6))[0]
        trained = evaluation.normalize(decoded[None])[0].numpy()
        assert np.array_equal(load_image(path, meta), trained), (mode, size)


def test_predict_scales_16_bit_pngs_by_65535(tmp_path: Path) -> None:
    levels = np.array([[0, 257, 4112, 32896, 65535, 65535]] * 4, dtype=np.uint16)  # 0, 1, 16, 128, 255 (×257)
    Image.fromarray(levels).save(tmp_path / "a16.png")
    assert Image.open(tmp_path / "a16.png").mode == "I;16"
    meta = ModelMetadata(input_shape=[1, 4, 6], class_names=["a"])  # no normalisation: predict feeds 0–1
    x = load_image(tmp_path / "a16.png", meta)
    assert np.array_equal(x[0] * 255, levels // 257)  # was 255 wherever a value was over 255
