"""`validate` refuses what `train` would refuse (issue 15, item 11), through the real command line.

A head with the wrong number of classes for a dataset whose classes are known statically, and with
`--for train`, what training needs beyond a spec that checks: a data section, an image folder's
train folder (named by its absolute path).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

HEAD = """\
name: digits-head
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - flatten
    - linear: {id: head, out_features: OUT}
"""


def spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("data", "classes"),
    [("data: {dataset: {name: digits}}\n", 10), ("data: {dataset: {name: synthetic, num_classes: 3}}\n", 3)],
)
def test_validate_refuses_a_head_of_the_wrong_class_count(tmp_path: Path, data: str, classes: int) -> None:
    path = spec(tmp_path, HEAD.replace("OUT", "5") + data)
    result = run_cli("validate", path)
    assert result.exit_code == 1
    name = "digits" if "digits" in data else "synthetic"
    assert f"{path}:6:15: error: the model outputs 5 class scores but {name} has {classes} classes" in result.stderr
    assert f"hint: set out_features: {classes} on the last layer" in result.stderr
    fixed = spec(tmp_path, HEAD.replace("OUT", str(classes)) + data, "fixed.yaml")
    assert run_cli("validate", fixed).exit_code == 0


def test_train_refuses_it_with_the_same_words(tmp_path: Path) -> None:
    path = spec(tmp_path, HEAD.replace("OUT", "5") + "data: {dataset: {name: digits}}\n")
    validated, trained = run_cli("validate", path), run_cli("train", path, "--out", str(tmp_path / "run"))
    assert validated.exit_code == trained.exit_code == 1
    message = "error: the model outputs 5 class scores but digits has 10 classes"
    assert message in validated.stderr and message in trained.stderr
    assert not (tmp_path / "run").exists()


def test_validate_for_train_needs_a_data_section(tmp_path: Path) -> None:
    path = spec(tmp_path, HEAD.replace("OUT", "10"))
    plain = run_cli("validate", path)
    assert plain.exit_code == 0 and f"{path}: ok" in plain.stdout  # a model alone is a valid spec
    for_train = run_cli("validate", "--for", "train", path)
    assert for_train.exit_code == 1
    assert f"{path}:1:1: error: the spec has no data section; training needs one" in for_train.stderr
    assert "hint: add `data: {dataset: {name: digits}}`" in for_train.stderr  # 1×8×8: the digits
    trained = run_cli("train", path, "--out", str(tmp_path / "run"))
    assert trained.exit_code == 1 and "the spec has no data section; training needs one" in trained.stderr


def test_validate_for_train_names_a_missing_image_folder_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = spec(tmp_path / "project", HEAD.replace("OUT", "2") + "data: {dataset: {name: image_folder, root: pets}}\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert run_cli("validate", path).exit_code == 0  # no data is read without --for train
    result = run_cli("validate", "--for", "train", path)
    assert result.exit_code == 1
    train = tmp_path / "project" / "pets" / "train"
    assert f"{path}:7:44: error: image_folder: no {train} folder" in result.stderr
    assert "note: data.dataset.root 'pets' is relative to the spec file's folder" in result.stderr
    _folder(tmp_path / "project" / "pets", {"cat": 1, "dog": 1})
    assert run_cli("validate", "--for", "train", path).exit_code == 0


def _folder(root: Path, counts: dict[str, int]) -> None:
    from PIL import Image

    for name, count in counts.items():
        (root / "train" / name).mkdir(parents=True)
        for i in range(count):
            Image.new("L", (8, 8), i * 40).save(root / "train" / name / f"{i}.png")


def test_validate_for_train_counts_an_image_folders_classes_against_the_head(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", {"a": 2, "b": 2, "c": 1})
    path = spec(tmp_path, HEAD.replace("OUT", "10") + "data: {dataset: {name: image_folder, root: imgs}}\n")
    assert run_cli("validate", path).exit_code == 0  # without --for train the folder is not read
    result = run_cli("validate", "--for", "train", path)
    assert result.exit_code == 1
    assert f"{path}:6:15: error: the model outputs 10 class scores but image_folder has 3 classes" in result.stderr
    fixed = spec(tmp_path, HEAD.replace("OUT", "3") + "data: {dataset: {name: image_folder, root: imgs}}\n", "ok.yaml")
    assert run_cli("validate", "--for", "train", fixed).exit_code == 0


def test_validate_for_train_refuses_an_empty_class_folder_as_train_does(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", {"a": 2, "b": 2, "empty": 0})
    path = spec(tmp_path, HEAD.replace("OUT", "3") + "data: {dataset: {name: image_folder, root: imgs}}\n")
    validated, trained = (
        run_cli("validate", "--for", "train", path),
        run_cli("train", path, "--out", str(tmp_path / "r")),
    )
    assert validated.exit_code == trained.exit_code == 1
    message = f"{tmp_path / 'imgs' / 'train' / 'empty'}: a class folder with no images"
    assert f"{path}:7:44: error: {message}" in validated.stderr
    assert message in trained.stderr


@pytest.mark.parametrize("size", [32, 30])
def test_the_no_data_hint_names_a_dataset_that_fits_the_model_input(tmp_path: Path, size: int) -> None:
    import re

    model = HEAD.replace("OUT", "10").replace(
        "channels: 1, height: 8, width: 8", f"channels: 3, height: {size}, width: {size}"
    )
    result = run_cli("validate", "--for", "train", spec(tmp_path, model))
    assert result.exit_code == 1
    suggested = re.search(r"hint: add `(data: \{dataset: \{name: (\w+)[^`]*\}\})`", result.stderr)
    assert suggested is not None, result.stderr
    assert suggested.group(2) == ("cifar10" if size == 32 else "image_folder")
    followed = spec(tmp_path, model + suggested.group(1).replace("DIR", "imgs") + "\n", "followed.yaml")
    assert run_cli("validate", followed).exit_code == 0  # no channel or size error once the hint is followed
