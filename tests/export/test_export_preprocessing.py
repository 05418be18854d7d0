"""One preprocessing definition (issue 14, items 6 and 7): evaluate, export's gate, predict and bench
bring an image to the model's input the same way, from real files, real trained runs, real sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnspec.deploy.exporter import ExportReport, export_run
from cnnspec.deploy.images import load_image
from cnnspec.deploy.metadata import ModelMetadata
from cnnspec.deploy.predict import predict
from cnnspec.rundir.reader import load_trained
from cnnspec.training.api import evaluate_run, train
from cnnspec.training.augment import BatchAugment
from cnnspec.training.datasets import load_data
from cnnspec.training.sources import _FolderImages
from tests.cli_helpers import run_cli

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
        with Image.open(path) as opened:
            assert opened.mode == mode
        decoded, _ = _FolderImages([(str(path), 0)], channels=channels, size=(6, 6))[0]
        trained = evaluation.normalize(decoded[None])[0].numpy()
        assert np.array_equal(load_image(path, meta), trained), (mode, size)


def test_predict_scales_16_bit_pngs_by_65535(tmp_path: Path) -> None:
    levels = np.array([[0, 257, 4112, 32896, 65535, 65535]] * 4, dtype=np.uint16)  # 0, 1, 16, 128, 255 (×257)
    Image.fromarray(levels).save(tmp_path / "a16.png")
    with Image.open(tmp_path / "a16.png") as opened:
        assert opened.mode == "I;16"
    meta = ModelMetadata(input_shape=[1, 4, 6], class_names=["a"])  # no normalisation: predict feeds 0–1
    x = load_image(tmp_path / "a16.png", meta)
    assert np.array_equal(x[0] * 255, levels // 257)  # was 255 wherever a value was over 255


# --- the definition itself: computed from the spec, checked against torchvision ------------------

RECIPES = """\
name: recipe
model:
  input: {{channels: 3, height: 16, width: 16}}
  layers:
    - flatten
    - linear: {{out_features: 2}}
data:
  dataset: {{name: {dataset}}}
{data}"""


@pytest.mark.parametrize(
    ("dataset", "data", "expected"),
    [
        ("synthetic", "  resize: 20\n  augment:\n    - random_crop: {size: 16}\n", ((20, 20), True, "center_crop")),
        ("synthetic", "  resize: 20\n  augment:\n    - random_resized_crop: {size: 16}\n", ((20, 20), True, "resize")),
        ("synthetic", "  augment:\n    - horizontal_flip\n", ((16, 16), False, "center_crop")),
        (
            "cifar10",
            "  augment:\n    - random_resized_crop: {size: 16}\n    - random_crop: {size: 16, padding: 2,"
            " padding_mode: reflect}\n",
            ((32, 32), False, "center_crop"),
        ),
    ],
    ids=["resize-then-crop", "resize-then-rrc", "no-size-change", "cifar-last-op-wins"],
)
def test_the_preprocessing_follows_the_spec(dataset: str, data: str, expected: tuple[object, ...]) -> None:
    from cnnspec.preprocess import preprocessing_for
    from cnnspec.spec.load import loads

    spec = loads(RECIPES.format(dataset=dataset, data=data), file="<recipe>")
    pre = preprocessing_for(spec, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    assert (pre.image_size, pre.resize, pre.fit) == expected
    assert pre.channels == 3 and pre.input_size == (16, 16) and pre.std == (0.2, 0.25, 0.3)
    assert pre.padding_mode == ("reflect" if "reflect" in data else "constant")


def test_prepare_is_torchvisions_center_crop_pad_and_resize() -> None:
    """Step 3 against an independent implementation: torchvision.transforms.v2.functional (centre
    crop, which pads with zeros when the crop is larger; antialiased bilinear resize) and torch's
    reflect padding."""
    import torch.nn.functional as F
    import torchvision.transforms.v2.functional as TF

    from cnnspec.preprocess import prepare_batch

    images = torch.randint(0, 256, (3, 3, 20, 20), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x = images.numpy()
    cropped = prepare_batch(x, "center_crop", (16, 16), mean, std)
    torch.testing.assert_close(torch.from_numpy(cropped), (TF.center_crop(images, [16, 16]) / 255 - m) / s)
    padded = prepare_batch(x, "center_crop", (24, 24), None, None)
    torch.testing.assert_close(torch.from_numpy(padded), TF.center_crop(images, [24, 24]) / 255)
    reflected = prepare_batch(x, "center_crop", (24, 24), None, None, "reflect")
    torch.testing.assert_close(torch.from_numpy(reflected), F.pad(images.float(), (2, 2, 2, 2), mode="reflect") / 255)
    resized = prepare_batch(x, "resize", (12, 12), mean, std)
    want = (TF.resize(images.float(), [12, 12], antialias=True) / 255 - m) / s
    torch.testing.assert_close(torch.from_numpy(resized), want, atol=1e-5, rtol=0)


# --- the metadata: recorded, checked, and older files -------------------------------------------


def _without(model_path: Path, out: Path, key: str, **values: object) -> Path:
    """A copy of an exported file without metadata `key` (as cnnspec wrote files before it existed)."""
    import onnx

    model = onnx.load(str(model_path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    kept = [(k, json.dumps(values[k]) if k in values else v) for k, v in kept]
    del model.metadata_props[:]
    for k, v in kept:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(out))
    return out


def test_the_onnx_file_records_every_step(resized_export: ExportReport) -> None:
    import onnx

    props = {p.key: json.loads(p.value) for p in onnx.load(str(resized_export.path)).metadata_props}
    assert props["preprocessing"] == {
        "channels": 3,
        "image_size": [16, 16],
        "resize": True,
        "fit": "center_crop",
        "input_size": [16, 16],
        "padding_mode": "constant",
        "scale": 255.0,
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
    }


def test_an_older_file_without_the_steps_is_read_when_its_keys_say_them(
    resized_export: ExportReport, tmp_path: Path
) -> None:
    png = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(png)
    older = _without(resized_export.path, tmp_path / "older.onnx", "preprocessing")
    got = predict(older, [png]).predictions[0].top
    want = predict(resized_export.path, [png]).predictions[0].top
    assert [(s.index, s.logit) for s in got] == [(s.index, s.logit) for s in want]


def test_an_older_file_that_cannot_say_how_it_cropped_is_refused(resized_export: ExportReport, tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(png)
    older = _without(resized_export.path, tmp_path / "older.onnx", "preprocessing", resize=[20, 20])
    result = run_cli("predict", str(older), str(png))
    assert result.exit_code == 1
    assert "it says training resized images to 20×20 but not how they became the model's 16×16 input" in result.stderr
    assert "export the run again with this cnnspec" in result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mean": [0.1, 0.1, 0.1]}, "metadata 'preprocessing' says mean [0.5, 0.4, 0.3] but 'mean' is [0.1, 0.1, 0.1]"),
        ({"resize": [20, 20]}, "metadata 'preprocessing' says resize [16, 16] but 'resize' is [20, 20]"),
        ({"preprocessing.fit": "squash"}, "metadata 'preprocessing' must be an object with channels"),
        ({"preprocessing.scale": 65535}, "metadata 'preprocessing' must be"),
        ({"preprocessing.crop": [8, 8]}, "metadata 'preprocessing' must be"),
        ({"preprocessing.image_size": [60000, 60000]}, "metadata 'preprocessing' must be"),
        ({"preprocessing.std": [0.2, 0.0, 0.3]}, "metadata 'preprocessing' must be"),
    ],
    ids=["mean", "resize", "fit", "scale", "unknown-step", "huge", "zero-std"],
)
def test_steps_that_disagree_or_are_damaged_are_refused(
    resized_export: ExportReport, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    import onnx

    from tests.export._export_helpers import rewrite_metadata

    props = {p.key: json.loads(p.value) for p in onnx.load(str(resized_export.path)).metadata_props}
    values: dict[str, object] = {}
    for key, value in change.items():
        if key.startswith("preprocessing."):
            values["preprocessing"] = {**props["preprocessing"], key.split(".", 1)[1]: value}
        else:
            values[key] = value
    sent = rewrite_metadata(resized_export.path, tmp_path / "sent.onnx", **values)
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(png)
    result = run_cli("predict", str(sent), str(png))
    assert result.exit_code == 1 and message in result.stderr, result.stderr


# --- item 7: a constant channel -------------------------------------------------------------------

CONSTANT_GREEN = """\
name: constant-green
model:
  input: {{channels: 3, height: 8, width: 8}}
  layers:
    - conv2d: {{out_channels: 4, kernel_size: 3, padding: 1}}
    - relu
    - flatten
    - linear: {{out_features: 2}}
data:
  dataset: {{name: image_folder, root: '{root}'}}
  resize: 8
  batch_size: 8
  val_split: 0
  num_workers: 0
train: {{epochs: 1, seed: 0}}
"""


def test_a_channel_constant_over_the_data_is_only_centred_and_a_one_level_change_stays_small(
    tmp_path: Path,
) -> None:
    """Green is 90 in every pixel of every image: its std is 0, and it gets std 1, so a change of
    one level in one pixel moves the input by 1/255 (with the old 1e-6 it moved it by 3,900)."""
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        for split in ("train", "test"):
            (tmp_path / "images" / split / name).mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                pixels[:, :, 1] = 90
                Image.fromarray(pixels).save(tmp_path / "images" / split / name / f"{i}.png")
    spec = tmp_path / "spec.yaml"
    spec.write_text(CONSTANT_GREEN.format(root=tmp_path / "images"), encoding="utf-8")
    run = train(spec, tmp_path / "run", progress=False)
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["std"][1] == 1.0 and info["mean"][1] == pytest.approx(90 / 255)
    exported = export_run(run)
    one = tmp_path / "images" / "test" / "cat" / "0.png"
    with Image.open(one) as opened:
        nudged = np.asarray(opened).copy()
    nudged[3, 3, 1] = 91  # an invisible change
    Image.fromarray(nudged).save(tmp_path / "nudged.png")
    before, after = (predict(exported.path, [p], top_k=2).predictions[0].top for p in (one, tmp_path / "nudged.png"))
    moved = max(abs(a.logit - b.logit) for a in before for b in after if a.index == b.index)
    assert moved < 0.05
