"""A run's files belong together: a training state from another run, a run.json or spec.yaml edited
after training, and a resume that would prepare images otherwise are refused, never believed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import cnnspec
from cnnspec.rundir.paths import RunPaths
from tests.cli_helpers import run_cli

SPEC = """\
name: run-identity
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - relu
    - flatten
    - linear: {out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 256
  val_split: 0.1
  augment:
    - random_crop: {size: 8, padding: 1}
optimizer: {name: adamw, lr: 0.01}
train: {epochs: 1, seed: 0}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    spec = tmp_path_factory.mktemp("spec") / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    out = tmp_path_factory.mktemp("runs")
    return (
        cnnspec.train(spec, out=out / "a", progress=False),
        cnnspec.train(spec, out=out / "b", progress=False),
    )


def _copy(run: Path, tmp_path: Path) -> Path:
    copied = tmp_path / run.name
    shutil.copytree(run, copied, ignore=shutil.ignore_patterns("*.lock"))
    return copied


def _files(run: Path) -> dict[str, bytes]:
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != ".cnnspec.lock"
    }


def test_each_run_gets_its_own_id_and_its_state_carries_it(runs: tuple[Path, Path]) -> None:
    a, b = (json.loads(RunPaths(r).info.read_text())["run_id"] for r in runs)
    assert a and b and a != b


def test_a_training_state_from_another_run_is_refused_before_writing(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(runs[0], tmp_path)
    shutil.copyfile(RunPaths(runs[1]).state, RunPaths(run).state)  # same spec and architecture, other run
    before = _files(run)
    result = run_cli("train", "--resume", str(run), "--set", "train.epochs=2")
    assert (result.exit_code == 1 and result.exception is None) or isinstance(result.exception, SystemExit)
    assert "last.state.pt belongs to another run" in result.output, result.output
    assert _files(run) == before


def test_the_run_s_own_state_still_resumes(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(runs[0], tmp_path)
    result = run_cli("train", "--resume", str(run), "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert (
        json.loads(RunPaths(run).info.read_text())["run_id"] == json.loads(RunPaths(runs[0]).info.read_text())["run_id"]
    )


def _edit_info(run: Path, **changes: object) -> None:
    info = json.loads(RunPaths(run).info.read_text())
    info.update(changes)
    RunPaths(run).info.write_text(json.dumps(info), encoding="utf-8")


@pytest.mark.parametrize(
    "edit",
    ["class_names", "mean"],
)
@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_a_record_edited_after_training_is_refused_by_export_and_evaluate(
    runs: tuple[Path, Path], tmp_path: Path, edit: str, command: str
) -> None:
    run = _copy(runs[0], tmp_path)
    info = json.loads(RunPaths(run).info.read_text())
    if edit == "class_names":
        _edit_info(run, class_names=[f"digit {n}" for n in info["class_names"]])
    else:
        _edit_info(run, mean=[m + 0.2 for m in info["mean"]])
    result = run_cli(command, str(run))
    assert result.exit_code == 1, result.output
    assert "no longer says how best.safetensors was trained" in result.output, result.output
    assert not (run / "model.onnx").exists()


def test_an_unedited_run_exports(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(runs[0], tmp_path)
    result = run_cli("export", str(run))
    assert result.exit_code == 0, result.output


def test_a_resume_that_prepares_images_otherwise_is_refused_at_the_set(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(runs[0], tmp_path)
    before = _files(run)
    result = run_cli("train", "--resume", str(run), "--set", "train.epochs=2", "--set", "data.resize=12")
    assert result.exit_code == 1, result.output
    assert "with the images prepared otherwise: stored at 8×8" in result.output, result.output
    assert "--set data.resize=12" in result.output, result.output
    assert _files(run) == before


@pytest.mark.parametrize(
    ("names", "said"),
    [
        (["0", "1", "2", "3", "4", "5", "6", "7", "8", "8"], "'8' appears more than once"),
        (["0", "1", "2", "3", "4", "5", "6", "7", "8", ""], "an empty class name"),
    ],
)
def test_run_json_with_duplicate_or_empty_class_names_is_refused(
    runs: tuple[Path, Path], tmp_path: Path, names: list[str], said: str
) -> None:
    run = _copy(runs[0], tmp_path)
    _edit_info(run, class_names=names)
    result = run_cli("export", str(run))
    assert result.exit_code == 1 and said in result.output, result.output
