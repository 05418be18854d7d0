"""evaluate.tta: the logits are the mean of the model's logits on the explicitly transformed images,
and `evaluate` / the final test use it and say so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnspec
from cnnspec.training.api import evaluate_run
from cnnspec.training.evaluation import tta_logits
from tests.train._train_helpers import DIGITS_FAST


def _by_hand(x: np.ndarray, flip: bool, translate: int | None) -> list[np.ndarray]:
    """The views written out with numpy: mirror, and shifts of the reflect-padded image."""
    views = [x, x[..., ::-1]] if flip else [x]
    if translate:
        p = translate
        pad = [np.pad(v, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect") for v in views]
        h, w = x.shape[-2:]
        views += [q for v in pad for q in (v[..., :h, :w], v[..., 2 * p :, 2 * p :])]
    return [np.ascontiguousarray(v) for v in views]


@pytest.mark.parametrize(("tta", "count"), [(["flip"], 2), (["translate"], 3), (["flip", "translate"], 6)])
def test_tta_is_the_mean_of_the_transformed_images_predictions(tta: list[str], count: int) -> None:
    spec = cnnspec.load(Path(__file__).resolve().parents[2] / "specs" / "small_cnn.yaml")
    torch.manual_seed(0)
    model = cnnspec.build(spec).eval()
    x = torch.rand(4, 3, 32, 32)
    views = _by_hand(x.numpy(), "flip" in tta, 2 if "translate" in tta else None)
    assert len(views) == count
    with torch.no_grad():
        expected = torch.stack([model(torch.from_numpy(v)) for v in views]).mean(dim=0)
        got = tta_logits(model, x, tta, 2)
        plain = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 1e-4  # the views changed the output: not the plain pass


@pytest.mark.slow
def test_evaluate_and_the_final_test_report_tta(tmp_path: Path) -> None:
    text = DIGITS_FAST.replace("train: {epochs: 2, seed: 3}", "train: {epochs: 1, seed: 3}\nevaluate: {tta: [flip]}")
    assert text != DIGITS_FAST
    (tmp_path / "spec.yaml").write_text(text, encoding="utf-8")
    run = cnnspec.train(tmp_path / "spec.yaml", out=tmp_path / "run", progress=False)
    result = json.loads((run / "result.json").read_text())
    report = evaluate_run(run)
    assert result["test_tta"] == ["flip"] and report["tta"] == ["flip"]
    assert report["accuracy"] == pytest.approx(result["test_accuracy"])  # the same weights, the same views
