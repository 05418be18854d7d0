"""Classification figures from true labels, predictions and scores, by scikit-learn (no torch).

`evaluate` (a run's test or val split, on torch) and `predict` on a labelled folder (the ONNX
model alone) report the same figures, computed here, so the two agree on the same images:

- the confusion matrix (row = true class, column = predicted class, over every class of the model);
- precision, recall and F1 per class (`precision_recall_fscore_support`); a figure with no
  images to define it is None (`null` in JSON): precision of a class never predicted, recall and
  F1 of a class with no images;
- their macro averages over the classes that have images, where a class that has images but is
  never predicted counts with precision 0 (scikit-learn's `zero_division=0`): so a model that never
  says a class is not rewarded for it;
- top-5 accuracy (`top_k_accuracy_score`: the true class among the 5 highest scores), None for a
  model of 5 classes or fewer, where every image's class is in its top 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

TOP_K = 5


@dataclass(frozen=True)
class ClassFigures:
    precision: float | None
    recall: float | None
    f1: float | None
    images: int  # of this class among the labelled images (scikit-learn's support)


@dataclass(frozen=True)
class Classification:
    images: int
    accuracy: float
    confusion_matrix: list[list[int]]
    per_class: dict[str, ClassFigures]
    macro_precision: float | None
    macro_recall: float | None
    macro_f1: float | None
    top5_accuracy: float | None

    def to_json(self) -> dict[str, Any]:
        """The keys evaluation.json and `predict --format json` carry."""
        return {
            "images": self.images,
            "accuracy": self.accuracy,
            "top5_accuracy": self.top5_accuracy,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "per_class": {
                name: {"precision": f.precision, "recall": f.recall, "f1": f.f1, "images": f.images}
                for name, f in self.per_class.items()
            },
            "confusion_matrix": self.confusion_matrix,
        }


def _figure(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def classify(
    labels: np.ndarray, predictions: np.ndarray, class_names: list[str], scores: np.ndarray | None = None
) -> Classification:
    """The figures of `predictions` (N,) against `labels` (N,), both class indices into `class_names`;
    `scores` (N, K), any per-class scores (logits or probabilities), gives top-5 accuracy."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    k = len(class_names)
    everything = list(range(k))
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    n = len(labels)
    if n == 0:
        nothing = ClassFigures(None, None, None, 0)
        empty = [[0] * k for _ in everything]
        return Classification(0, math.nan, empty, dict.fromkeys(class_names, nothing), None, None, None, None)
    matrix = confusion_matrix(labels, predictions, labels=everything)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=everything, zero_division=np.nan
    )
    present = [c for c in everything if support[c] > 0]
    macro = precision_recall_fscore_support(labels, predictions, labels=present, average="macro", zero_division=0)
    top5 = None
    if scores is not None and k > TOP_K:
        top5 = float(top_k_accuracy_score(labels, scores, k=TOP_K, labels=everything))
    return Classification(
        images=n,
        accuracy=float(np.mean(labels == predictions)),
        confusion_matrix=matrix.tolist(),
        per_class={
            name: ClassFigures(_figure(precision[c]), _figure(recall[c]), _figure(f1[c]), int(support[c]))
            for c, name in enumerate(class_names)
        },
        macro_precision=float(macro[0]),
        macro_recall=float(macro[1]),
        macro_f1=float(macro[2]),
        top5_accuracy=top5,
    )
