"""A new user's image folder and weights files (issue 15, items 12 and 13), run through the command line.

The spec lives in its own project folder and names its files relatively; every command runs from
another folder (in this process, through tests/cli_helpers.run_cli, from the folder that
`monkeypatch.chdir` moves to: a subprocess per command would import torch each time). Relative
paths are the spec folder's (docs/spec-language.md, "Paths"), a run records them absolute so
`evaluate` and `--resume` find the same files from anywhere, an image folder without
`data.resize` takes the model's input size, and an empty class folder is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import Result

from cnnspec.preprocess import stored_size
from cnnspec.spec.load import load
from tests.cli_helpers import run_cli

FOLDER_SPEC = """\
name: pets
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - relu
    - flatten
    - linear: {out_features: 2}
data:
  dataset: {name: image_folder, root: images}
  batch_size: 4
  val_split: 0
  num_workers: 0
train: {epochs: 1}
"""


def run_cnnspec(*args: str | Path, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """`cnnspec ARGS` run from the folder `cwd`."""
    monkeypatch.chdir(cwd)
    return run_cli(*map(str, args))


def images(root: Path, classes: dict[str, int], split: str = "train", size: int = 8) -> None:
    """ROOT/SPLIT/CLASS/i.png: `classes` maps each class to its count of grey images of size×size."""
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(root / split / name / f"{i}.png")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp_path/project/spec.yaml with root: images (project/images/{train,test}/{cat,dog}); tmp_path/elsewhere."""
    folder = tmp_path / "project"
    images(folder / "images", {"cat": 4, "dog": 4})
    images(folder / "images", {"cat": 2, "dog": 2}, split="test")
    (folder / "spec.yaml").write_text(FOLDER_SPEC, encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    return folder


# Trains one epoch on 8 images, evaluates and resumes: about 3 s of CPU (more wall time on a loaded machine).
def test_image_folder_trains_from_another_folder_without_resize_and_its_run_works_anywhere(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = run_cnnspec("summary", project / "spec.yaml", cwd=tmp_path, monkeypatch=monkeypatch)
    assert summary.exit_code == 0, summary.stderr
    assert "Note: image_folder images are resized to 8×8, the model's input (data.resize is not set)" in summary.stdout

    run = tmp_path / "run"
    trained = run_cnnspec("train", project / "spec.yaml", "--out", run, cwd=tmp_path, monkeypatch=monkeypatch)
    assert trained.exit_code == 0, trained.stderr
    recorded = load(run / "spec.yaml")
    assert recorded.data is not None and recorded.data.dataset.root == str(project / "images")
    # Any image given to predict is resized to the model's input too, as training's were.
    assert stored_size(recorded) == ((8, 8), True)

    # From a folder that holds neither the spec nor the images.
    elsewhere = tmp_path / "elsewhere"
    evaluated = run_cnnspec("evaluate", run, cwd=elsewhere, monkeypatch=monkeypatch)
    assert evaluated.exit_code == 0, evaluated.stderr
    assert "accuracy" in evaluated.stdout
    resumed = run_cnnspec("train", "--resume", run, "--set", "train.epochs=2", cwd=elsewhere, monkeypatch=monkeypatch)
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming" in resumed.stderr


def test_a_missing_image_folder_is_named_by_its_absolute_path(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = project / "spec.yaml"
    spec.write_text(FOLDER_SPEC.replace("root: images", "root: photos"), encoding="utf-8")
    proc = run_cnnspec("train", spec, "--out", tmp_path / "run", cwd=tmp_path, monkeypatch=monkeypatch)
    assert proc.exit_code == 1
    assert f"no {project / 'photos' / 'train'} folder" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_an_empty_class_folder_is_refused_by_name(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "images" / "train" / "bird").mkdir()
    (project / "images" / "train" / "bird" / "notes.txt").write_text("not an image")
    proc = run_cnnspec("train", project / "spec.yaml", "--out", tmp_path / "run", cwd=tmp_path, monkeypatch=monkeypatch)
    assert proc.exit_code == 1
    assert f"{project / 'images' / 'train' / 'bird'}: a class folder with no images" in proc.stderr
    assert "cat:" not in proc.stderr and "dog:" not in proc.stderr  # only the empty one is named
    assert not (tmp_path / "run").exists()


BACKBONE_SPEC = """\
name: transfer
model:
  input: {channels: 3, height: 32, width: 32}
  weights: weights/model.safetensors
  layers:
    - torchvision: {id: backbone, model: mobilenet_v3_small, weights: weights/backbone.pth}
    - linear: {id: fc, out_features: 4}
data:
  dataset: {name: synthetic, num_samples: 16, num_classes: 4}
  batch_size: 8
  val_split: 0
train: {epochs: 1}
"""


@pytest.mark.slow  # builds mobilenet_v3_small three times (train, its check, evaluate): about 6 s
def test_weights_files_are_relative_to_the_spec_and_recorded_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import torchvision
    from safetensors.torch import save_file

    import cnnspec

    project = tmp_path / "project"
    (project / "weights").mkdir(parents=True)
    backbone = torchvision.models.mobilenet_v3_small()
    torch.save(backbone.state_dict(), project / "weights" / "backbone.pth")
    spec = project / "spec.yaml"
    spec.write_text(BACKBONE_SPEC.replace("  weights: weights/model.safetensors\n", ""), encoding="utf-8")
    model = cnnspec.build(cnnspec.load(spec))  # the backbone's file, read from here (another folder)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, project / "weights" / "model.safetensors")
    spec.write_text(BACKBONE_SPEC, encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()

    run = tmp_path / "run"
    trained = run_cnnspec("train", spec, "--out", run, cwd=tmp_path / "elsewhere", monkeypatch=monkeypatch)
    assert trained.exit_code == 0, trained.stderr
    recorded = load(run / "spec.yaml")
    assert recorded.model.weights == str(project / "weights" / "model.safetensors")
    layer = recorded.model.layers[0].value
    assert getattr(layer, "weights", None) == str(project / "weights" / "backbone.pth")
    # evaluate builds the backbone again, reading its file: from a third folder.
    evaluated = run_cnnspec("evaluate", run, cwd=tmp_path, monkeypatch=monkeypatch)
    assert evaluated.exit_code == 0, evaluated.stderr
