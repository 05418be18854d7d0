"""Evaluation: loss, accuracy, predictions over a split; confusion matrix and per-class accuracy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnspec.rundir.paths import RunPaths
from cnnspec.training.precision import Precision
from cnnspec.training.records import save_figure
from cnnspec.training.sources import Source


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy (no label smoothing)
    accuracy: float
    predictions: torch.Tensor  # (N,) int64, CPU
    labels: torch.Tensor  # (N,) int64, CPU
    scores: torch.Tensor | None = None  # (N, K) float32 logits, CPU: kept when asked for (top-5 accuracy)


def tta_views(x: torch.Tensor, tta: Sequence[str], pixels: int) -> list[torch.Tensor]:
    """The images evaluate.tta averages over: `x` itself, its horizontal mirror (flip), and each of those
    shifted by (+pixels, +pixels) and (−pixels, −pixels), reflect-padded (translate; airbench's views)."""
    views = [x, torch.flip(x, dims=(-1,))] if "flip" in tta else [x]
    if "translate" in tta:
        h, w = x.shape[-2:]
        shifted = []
        for view in views:
            padded = F.pad(view, (pixels, pixels, pixels, pixels), mode="reflect")
            # content moves down-right by `pixels` (crop from the top-left), then up-left
            shifted += [padded[..., :h, :w], padded[..., 2 * pixels :, 2 * pixels :]]
        views += shifted
    return views


def tta_logits(model: nn.Module, x: torch.Tensor, tta: Sequence[str], pixels: int) -> torch.Tensor:
    """The mean of the model's float logits over `tta_views` (the logits, not probabilities: airbench's
    choice; the argmax of either mean rarely differs, and the loss reads the averaged logits)."""
    views = tta_views(x, tta, pixels)
    return torch.stack([model(v).float() for v in views]).mean(dim=0)


# inference_mode rather than no_grad: no version counters or view tracking on the outputs; 1.05–1.6×
# the images/s of no_grad in benchmarks/cpu_defaults.py (docs/benchmarks.md, "CPU defaults").
@torch.inference_mode()
def evaluate_model(
    model: nn.Module,
    source: Source,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int,
    precision: Precision,
    channels_last: bool = False,
    keep_scores: bool = False,
    tta: Sequence[str] = (),
    tta_pixels: int = 2,
) -> EvalResult:
    """Run `model` (eval mode) over every image of `source` in order; `prepare` turns uint8 into input.
    `keep_scores` keeps every image's logits (the result's `scores`); `tta` (evaluate.tta) averages the
    logits over the views `tta_views` makes."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=precision.device)
    preds: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    try:
        for images, y in source.batches(None, batch_size, precision.device):
            x = prepare(images)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                logits = tta_logits(model, x, tta, tta_pixels) if tta else model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            preds.append(logits.argmax(dim=1).cpu())
            if keep_scores:
                scores.append(logits.cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    if not labels:
        return EvalResult(
            float("nan"), float("nan"), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
        )
    p, t = torch.cat(preds), torch.cat(labels)
    kept = torch.cat(scores) if keep_scores else None
    return EvalResult(float(loss_sum) / len(t), float((p == t).double().mean()), p, t, kept)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts: row = true class, column = predicted class."""
    flat = labels * num_classes + predictions
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(matrix: torch.Tensor) -> list[float | None]:
    """Recall of each class (correct / images of that class); None for a class with no images."""
    totals = matrix.sum(dim=1)
    return [float(matrix[i, i] / totals[i]) if totals[i] > 0 else None for i in range(matrix.shape[0])]


def plot_confusion(matrix: torch.Tensor, class_names: list[str], paths: RunPaths, title: str) -> None:
    """The confusion matrix as RUN/confusion_matrix.png: rows normalised to 1, counts written in the cells when few."""
    from cnnspec.render.confusion import confusion_figure

    save_figure(confusion_figure(matrix.numpy(), class_names, title), paths, paths.confusion)
