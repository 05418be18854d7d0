"""A hostile tester's findings on the deployment side (export, predict, bench, quantize): models whose
real output disagrees with their metadata, exports into another run's folder or over a user's file,
a run's model.onnx that is another run's, duplicate metadata keys, a model name that is not UTF-8, and
the image limit predict and training share (issue 14, deploy findings 1–4, 6, 7; serve's in
tests/serve/test_serve_hostile.py).

Real files and real onnxruntime sessions: hand-made graphs (onnx.helper) carry cnnspec's metadata, and
untrained runs (`init_run`) are exported by the real exporter. Commands run in this process through the
CLI (any escaped exception fails the test), or as `python -m cnnspec` where the file name is raw bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import cnnspec
from cnnspec.deploy.exporter import export_run
from cnnspec.deploy.metadata import ModelMetadata
from cnnspec.errors import ExportError
from cnnspec.rundir.untrained import init_run
from cnnspec.spec.load import loads
from tests.export._export_helpers import TINY_GREY
from tests.reliability._deploy_models import CLASSES, lying_model
from tests.reliability._reliability_helpers import ROOT, assert_refused, child_env, cli, report


@pytest.fixture
def rgb_image(tmp_path: Path) -> Path:
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("width", [3, 1])
def test_a_model_whose_real_output_width_is_not_its_class_count_is_refused(
    width: int, tmp_path: Path, rgb_image: Path
) -> None:
    model = tmp_path / "lie.onnx"
    onnx.save(lying_model(width), str(model))
    needle = f"returned {width} logit{'s' if width > 1 else ''} per image, but its metadata names 2 classes"
    runs = [
        ("predict", model, rgb_image, "--device", "cpu"),
        ("predict", model, rgb_image, "--device", "cpu", "--format", "json"),
        ("predict", model, tmp_path, "--device", "cpu"),  # a folder of images
        ("bench", model, "--batch", "1", "--seconds", "0", "--device", "cpu"),
    ]
    for args in runs:
        result = cli(*args)
        assert_refused(result, needle)
        assert "dog" not in result.stdout and "cat" not in result.stdout, result.output  # no answer at all
    report("hostile-deploy output width", width=width, commands_refused=len(runs))


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two untrained runs of different specs, A exported, B not."""
    a = init_run(loads(TINY_GREY, file="<a>"), tmp_path / "A", class_names=list("abc"))
    b = init_run(loads(TINY_GREY.replace("out_channels: 4", "out_channels: 6"), file="<b>"), tmp_path / "B",
                 class_names=list("abc"))  # fmt: skip
    export_run(a)
    return a, b


def test_export_into_another_runs_folder_is_refused(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    before = sorted(p.name for p in b.rglob("*"))
    (b / "exports").mkdir()
    for target in (b / "model.onnx", b / "exports" / "a.onnx"):  # checkpoints/: test_write_targets.py
        result = cli("export", a, "--out", target)
        assert_refused(result, f"it is inside the run {b}, not the run being exported ({a})")
        assert not target.exists()
    (b / "exports").rmdir()
    assert sorted(p.name for p in b.rglob("*")) == before
    ok = cli("export", a, "--out", a / "copy.onnx")  # inside the run being exported: its own folder
    assert ok.code == 0, ok.output


@pytest.mark.parametrize("how", ["another spec", "another run of the same spec"])
def test_a_runs_model_onnx_exported_from_another_run_is_refused(
    how: str, two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_runs
    if how == "another run of the same spec":
        b = init_run(loads(TINY_GREY, file="<a>"), tmp_path / "A2", class_names=list("abc"))
    shutil.copy(a / "model.onnx", b / "model.onnx")  # not through export: a copy, as the tester made it
    info_a, info_b = (json.loads((r / "run.json").read_text()) for r in (a, b))
    key = "spec_hash" if how == "another spec" else "run_id"
    assert info_a[key] != info_b[key]
    for args in (("bench", b, "--batch", "1", "--seconds", "0", "--device", "cpu"), ("quantize", b)):
        result = cli(*args)
        assert_refused(
            result,
            f"{b / 'model.onnx'} is not an export of the run {b}",
            f"its metadata {key} is {info_a[key]}",
            f"the run's run.json {key} is {info_b[key]}",
        )
    ok = cli("bench", a, "--batch", "1", "--seconds", "0", "--device", "cpu")
    assert ok.code == 0, ok.output


def test_export_never_replaces_a_file_that_is_not_an_onnx_model(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_runs
    spec = tmp_path / "digits.yaml"
    spec.write_text("name: digits\nmodel: {}\n", encoding="utf-8")
    photo = tmp_path / "photo.onnx"  # binary, with the right suffix, but not an ONNX model
    Image.new("RGB", (4, 4)).save(photo, format="PNG")
    for target in (spec, photo):
        content = target.read_bytes()
        result = cli("export", a, "--out", target)
        assert_refused(result, f"refused to replace {target}: it exists and is not an ONNX model")
        assert target.read_bytes() == content
    new = tmp_path / "new.yaml"  # a new file may have any name, and an ONNX file is replaced
    for _ in range(2):
        result = cli("export", a, "--out", new)
        assert result.code == 0, result.output
    assert onnx.load(str(new)).graph.output[0].name == "logits"


def test_a_model_whose_metadata_repeats_a_key_is_refused(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_runs
    model = onnx.load(str(a / "model.onnx"))
    entry = model.metadata_props.add()
    entry.key, entry.value = "class_names", json.dumps(["x", "y", "z"])  # a second class_names, last
    twice = tmp_path / "twice.onnx"
    onnx.save(model, str(twice))
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8), mode="L").save(image)
    for args in (("predict", twice, image), ("bench", twice, "--batch", "1", "--seconds", "0")):
        assert_refused(cli(*args), f'{twice}: metadata key "class_names" appears more than once')


def test_a_model_file_named_in_bytes_that_are_not_utf8_runs(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_runs
    image = tmp_path / "digit.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L").save(image)
    raw = os.fsencode(tmp_path) + b"/m\xfe.onnx"
    shutil.copy(os.fsencode(a / "model.onnx"), raw)
    outputs = []
    for model in (os.fsencode(a / "model.onnx"), raw):
        proc = subprocess.run(
            [sys.executable, "-m", "cnnspec", "predict", model, os.fsencode(image), "--format", "json"],
            capture_output=True, env=child_env(), cwd=ROOT, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        outputs.append(json.loads(proc.stdout)["predictions"][0]["top"])
    assert outputs[0] == outputs[1]
    bench = subprocess.run(
        [sys.executable, "-m", "cnnspec", "bench", raw, "--batch", "1", "--seconds", "0", "--device", "cpu"],
        capture_output=True, env=child_env(), cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr.decode(errors="replace")
    assert b"incompatible" not in bench.stderr


def test_a_non_utf8_model_name_with_external_data_is_refused_naming_the_file(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = two_runs
    model = onnx.load(str(a / "model.onnx"))
    raw = os.fsencode(tmp_path) + b"/m\xfe.onnx"
    onnx.save(model, os.fsdecode(raw), save_as_external_data=True, location="weights.data", size_threshold=0)
    with pytest.raises(ExportError) as caught:
        cnnspec.predict(os.fsdecode(raw), [tmp_path / "none.png"])
    message = caught.value.diagnostics[0].message
    assert message.startswith(f"{raw!r}: the file name is not valid UTF-8"), message


# --- one image limit (finding 4) ----------------------------------------------------------------------

IMAGE_FOLDER = """
name: big-image
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - relu
    - flatten
    - linear: {out_features: 2}
data:
  dataset: {name: image_folder, root: ROOT}
  resize: [8, 8]
  batch_size: 4
  val_split: 0
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 1, seed: 0}
"""


@pytest.mark.slow
def test_predict_reads_every_image_of_a_test_folder_that_evaluate_reads(tmp_path: Path) -> None:
    """A 9000×9000 photo (81 megapixels) in test/ is counted by training and evaluate, so predict on the
    same folder reads it too, and both report the same accuracy."""
    root = tmp_path / "ds"
    for split, count in (("train", 4), ("test", 2)):
        for k, name in enumerate(("dark", "light")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("L", (8, 8), 40 + 170 * k + i).save(root / split / name / f"{i}.png")
    Image.new("L", (9000, 9000), 230).save(root / "test" / "light" / "big.png")  # one colour: 80 KB of file
    spec = tmp_path / "spec.yaml"
    spec.write_text(IMAGE_FOLDER.replace("ROOT", str(root)), encoding="utf-8")
    run = cnnspec.train(spec, out=tmp_path / "run", progress=False)
    evaluated = cli("evaluate", run, "--format", "json")
    assert evaluated.code == 0, evaluated.output
    model = cnnspec.export(run)
    predicted = cli("predict", model, root / "test", "--format", "json", "--device", "cpu")
    assert predicted.code == 0, predicted.output
    evaluation = json.loads(predicted.stdout)["evaluation"]
    assert evaluation["images"] == 5
    assert evaluation["accuracy"] == pytest.approx(json.loads(evaluated.stdout)["accuracy"], abs=1e-12)


def one_bit_png(path: Path, side: int) -> Path:
    Image.new("1", (side, side)).save(path)  # a few KB of file, side² pixels once decoded
    return path


def test_training_and_predict_draw_the_image_limit_at_the_same_pixel(tmp_path: Path) -> None:
    from cnnspec.deploy.images import ImageTooLarge, check_pixels, decode_image
    from cnnspec.errors import DataError
    from cnnspec.preprocess import MAX_IMAGE_PIXELS
    from cnnspec.training.sources import check_image

    assert MAX_IMAGE_PIXELS == 178_956_970
    over = one_bit_png(tmp_path / "over.png", 13_378)  # 178,970,884 pixels
    under = 13_377  # 178,944,129 pixels: checked from its header alone, never decoded here
    meta = ModelMetadata(input_shape=[1, 8, 8], class_names=CLASSES, resize=[8, 8])
    with pytest.raises(DataError, match="decompression bomb"):
        check_image(str(over))  # training's check of an image folder's files
    with pytest.raises(ImageTooLarge, match="at most 178,956,970 pixels"):
        decode_image(over, meta)
    with pytest.raises(ImageTooLarge, match="images of at most 178,956,970 pixels are read"):
        check_pixels(13_378, 13_378, "over.png", meta)
    check_pixels(under, under, "under.png", meta)  # within the limit: predict decodes it, as training does
    check_image(str(one_bit_png(tmp_path / "under.png", under)))
