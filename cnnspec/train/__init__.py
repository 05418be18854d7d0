"""Training: data, batched augmentation, the loop, checkpoints and resume (imports torch)."""

from cnnspec.train.api import evaluate_run, train

__all__ = ["evaluate_run", "train"]
