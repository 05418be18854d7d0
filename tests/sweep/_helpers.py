"""A digits sweep small enough to run in seconds: 2 epochs, a 16-channel CNN, a kernel choice that cannot fit."""

from __future__ import annotations

from pathlib import Path

SPEC = """\
name: digits-sweep
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {id: conv1, out_channels: 8, kernel_size: 3, padding: 1}
    - relu
    - conv2d: {id: conv2, out_channels: 8, kernel_size: 3, padding: 1}
    - relu
    - flatten
    - linear: {id: head, out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 128
  val_split: 0.1
optimizer: {name: adamw, lr: 5.0e-3}
train: {epochs: EPOCHS, seed: 0}
sweep:
  trials: TRIALS
  pruner: none
  space:
    optimizer.lr: {log_uniform: [1.0e-3, 1.0e-2]}
    model.layers.2.conv2d.kernel_size: {choice: [3, 11]}   # 11 > the 10×10 padded feature map
"""


def write_spec(folder: Path, *, trials: int = 6, epochs: int = 1, extra: str = "") -> Path:
    path = folder / "sweep.yaml"
    path.write_text(SPEC.replace("EPOCHS", str(epochs)).replace("TRIALS", str(trials)) + extra)
    return path


def study_trials(out: Path, name: str = "digits-sweep", storage: str | None = None) -> list:
    import optuna

    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
