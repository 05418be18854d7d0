"""specs/cifar10_speed.yaml trains end to end (whitening, frozen BN gamma, EMA, TTA) on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights
from tests.conftest import SPECS


@pytest.mark.slow
def test_speed_spec_trains_with_its_recipe(tmp_path: Path) -> None:
    run = cnnspec.train(
        SPECS / "cifar10_speed.yaml",
        out=tmp_path / "run",
        overrides=[
            "data.dataset.name=synthetic",
            "data.dataset.num_samples=96",
            "data.batch_size=32",
            "train.epochs=1",
        ],
        progress=False,
    )
    result = json.loads((run / "result.json").read_text())
    assert result["test_tta"] == ["flip", "translate"]
    saved, state = read_weights(RunPaths(run).weights("last")), load_state(RunPaths(run).state)
    assert "ema" in state
    gamma = saved["block1.norm1.weight"]
    torch.testing.assert_close(gamma, torch.ones_like(gamma), rtol=0, atol=0)  # freeze_bn_weight
    torch.testing.assert_close(saved["whiten.weight"], state["model"]["whiten.weight"], rtol=0, atol=0)  # frozen
