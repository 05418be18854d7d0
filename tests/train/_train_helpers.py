"""Shared constants of the training tests (imported as `_train_helpers`, like tests/build's helpers)."""

from __future__ import annotations

# Subprocesses get the same thread count as the in-process runs they are compared with.
THREADS_ENV = {"OMP_NUM_THREADS": "1"}

# A digits CNN that trains an epoch in well under a second on 2 CPU cores.
DIGITS_FAST = """\
name: digits-fast
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - maxpool2d: {kernel_size: 2}
    - flatten
    - dropout: {p: 0.1}
    - linear: {out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 64
  val_split: 0.1
  augment:
    - random_crop: {size: 8, padding: 1}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 1.0e-4}
schedule: {name: cosine, warmup_epochs: 1}
train: {epochs: 2, seed: 3}
"""
