"""What `--resume` may change: values the saved state was made under are refused before anything is
written, at the `--set` that changed them; the optimizer settings a resume may change take effect."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.rundir.paths import RunPaths
from tests.cli_helpers import run_cli

SPEC = """\
name: resume-changes
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - flatten
    - linear: {out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 256
  val_split: 0.1
optimizer: {name: adamw, lr: 0.01, weight_decay: 1.0e-4}
train: {epochs: 1, seed: 0}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = tmp_path_factory.mktemp("spec") / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    return cnnspec.train(spec, out=tmp_path_factory.mktemp("runs") / "run", progress=False)


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("optimizer.name=sgd", "optimizer.name changed (adamw → sgd)"),
        ("optimizer.decay_norms_and_biases=false", "optimizer.decay_norms_and_biases changed (true → false)"),
        ("data.val_split=0.3", "data.val_split changed (0.1 → 0.3)"),
        ("train.seed=7", "train.seed changed (0 → 7)"),
        ("data.normalize=none", "data.normalize changed (auto → none)"),
        ("data.dataset.name=synthetic", "data.dataset.name changed (digits → synthetic)"),
    ],
)
def test_a_resume_that_changes_what_the_state_was_made_under_is_refused_before_writing(
    run: Path, override: str, said: str
) -> None:
    before = _files(run)
    result = run_cli("train", "--resume", str(run), "--set", "train.epochs=2", "--set", override)
    assert result.exit_code == 1
    assert f"--set {override}: error: cannot resume" in result.stderr
    assert said in result.stderr
    assert _files(run) == before  # spec.yaml, run.json and the checkpoints as they were


def test_a_resume_applies_a_changed_weight_decay(run: Path, tmp_path: Path) -> None:
    # torch's load_state_dict brings the saved groups' weight decay back; the resumed run must use the spec's.
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = run_cli("train", "--resume", str(copy), "--set", "train.epochs=2", "--set", "optimizer.weight_decay=0.25")
    assert result.exit_code == 0, result.stderr
    state = torch.load(RunPaths(copy).state, weights_only=True)
    decays = {g["weight_decay"] for g in state["optimizer"]["param_groups"]}
    assert decays == {0.25}
