"""best.yaml names the same files as the swept spec: its relative paths would resolve against the sweep folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

pytestmark = pytest.mark.slow

SPEC = """\
name: tiny-folder
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {id: conv1, out_channels: 4, kernel_size: 3, padding: 1}
    - relu
    - flatten
    - linear: {id: head, out_features: 2}
data:
  dataset: {name: image_folder, root: imgs}
  batch_size: 4
  num_workers: 0
  val_split: 0.25
optimizer: {name: adamw, lr: 5.0e-3}
train: {epochs: 1, seed: 0}
sweep:
  trials: 1
  pruner: none
  space:
    optimizer.lr: {log_uniform: [1.0e-3, 1.0e-2]}
"""


def test_best_yaml_trains_on_the_files_the_sweep_trained_on(tmp_path: Path) -> None:
    from PIL import Image

    import cnnspec

    specs = tmp_path / "specs"
    for split in ("train", "test"):
        for c, name in enumerate(("a", "b")):
            folder = specs / "imgs" / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("L", (8, 8), 40 + 150 * c + 10 * i).save(folder / f"{i}.png")
    spec = specs / "tiny.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "sw"
    assert run_cli("sweep", str(spec), "--out", str(out)).exit_code == 0
    result = run_cli("train", str(out / "best.yaml"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    trained = cnnspec.load(tmp_path / "run" / "spec.yaml")
    assert trained.data is not None and Path(trained.data.dataset.root) == specs / "imgs"
