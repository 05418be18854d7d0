"""Training: data, batched augmentation, the loop, checkpoints and resume (imports torch)."""

from __future__ import annotations

from cnnspec.callable_package import make_callable
from cnnspec.training.api import evaluate_run, train

__all__ = ["evaluate_run", "train"]

make_callable(__name__, train)
