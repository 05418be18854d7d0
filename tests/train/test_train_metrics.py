"""cnnspec.metrics on figures worked out by hand: what evaluate and predict on a labelled folder report."""

from __future__ import annotations

import numpy as np
import pytest

from cnnspec.metrics import classify


def test_figures_of_a_small_case_worked_by_hand() -> None:
    names = ["a", "b", "c", "d", "e", "f"]
    labels = np.array([0, 0, 1, 1, 2, 3])
    predictions = np.array([0, 1, 1, 1, 1, 3])  # c (one image) never predicted; e, f have no images
    scores = np.eye(6)[predictions] + np.linspace(0.0, 0.5, 6)  # f, e, d, c, b next after the top class
    got = classify(labels, predictions, names, scores)
    assert got.accuracy == pytest.approx(4 / 6)
    assert got.confusion_matrix[1] == [0, 2, 0, 0, 0, 0] and got.confusion_matrix[2] == [0, 1, 0, 0, 0, 0]
    a, b, c, e = (got.per_class[n] for n in "abce")
    assert (a.precision, a.recall, a.f1, a.images) == (1.0, 0.5, pytest.approx(2 / 3), 2)
    assert (b.precision, b.recall, b.f1) == (0.5, 1.0, pytest.approx(2 / 3))  # 2 of its 4 predictions
    assert (c.precision, c.recall, c.f1) == (None, 0.0, 0.0)  # never predicted: precision undefined
    assert (e.precision, e.recall, e.f1, e.images) == (None, None, None, 0)
    # Macro over a, b, c, d (the classes with images), c's undefined precision counted as 0.
    assert got.macro_precision == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert got.macro_recall == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert got.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 0 + 1) / 4)
    # Every image's top 5 leaves out its lowest score: b, or a for those said b; a's second image misses.
    assert got.top5_accuracy == pytest.approx(5 / 6)


def test_top5_is_none_for_five_classes_or_fewer() -> None:
    got = classify(np.array([0, 1]), np.array([0, 0]), list("abcde"), np.zeros((2, 5)))
    assert got.top5_accuracy is None and got.accuracy == 0.5
