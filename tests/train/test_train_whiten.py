"""conv2d init: whiten: the filters whiten the training patches (identity second moment), validate
refuses an out_channels that cannot be whitened, and freeze_weight keeps the filters through training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.errors import ShapeError
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import read_weights
from cnnspec.training.whiten import patches, whitening_filters
from tests.train._train_helpers import DIGITS_FAST

WHITEN = DIGITS_FAST.replace(
    "    - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}\n",
    "    - conv2d: {id: whiten, out_channels: 8, kernel_size: 2, init: whiten, freeze_weight: true}\n"
    "    - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}\n",
).replace("train: {epochs: 2, seed: 3}", "train: {epochs: 1, seed: 3}")


def test_whitening_filters_give_an_identity_second_moment() -> None:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(12, 12, generator=g)  # correlated channels and pixels
    x = (torch.randn(64, 12, 10 * 10, generator=g).transpose(1, 2) @ mix).transpose(1, 2).reshape(64, 12, 10, 10)
    x = x[:, :3]  # 3 channels of correlated values
    rows = patches(x, (2, 2))
    filters = whitening_filters(rows, 24, (2, 2), eps=0.0)
    out = torch.nn.functional.conv2d(x, filters[:12])  # the + half: one filter per eigenvector
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    moment = flat.T @ flat / flat.shape[0]
    torch.testing.assert_close(moment, torch.eye(12, dtype=torch.float64), rtol=0, atol=2e-3)
    torch.testing.assert_close(filters[12:], -filters[:12])


@pytest.mark.slow
def test_training_whitens_the_first_conv_and_keeps_it_frozen(tmp_path: Path) -> None:
    assert WHITEN != DIGITS_FAST
    (tmp_path / "spec.yaml").write_text(WHITEN, encoding="utf-8")
    run = cnnspec.train(tmp_path / "spec.yaml", out=tmp_path / "run", progress=False)
    weight = read_weights(RunPaths(run).weights("last"))["whiten.weight"]
    from cnnspec.training.datasets import load_data

    spec = cnnspec.load(tmp_path / "spec.yaml")
    data = load_data(spec, need_train=True)
    info = json.loads((run / "run.json").read_text())  # the run's normalisation: what the layer saw
    x = torch.cat([b for b, _ in data.train.batches(None, 512, torch.device("cpu"))]).float() / 255.0
    x = (x - info["mean"][0]) / info["std"][0]
    out = torch.nn.functional.conv2d(x[:5000], weight[:4])  # 1·2·2 = 4 eigenvectors, the + half
    flat = out.permute(0, 2, 3, 1).reshape(-1, 4).double()
    moment = flat.T @ flat / flat.shape[0]
    # the estimate saw these same images (digits' training split is under 5,000); eps 5e-4 shrinks it a little
    torch.testing.assert_close(moment, torch.eye(4, dtype=torch.float64), rtol=0, atol=0.05)


def test_validate_refuses_too_many_whitening_channels(tmp_path: Path) -> None:
    bad = WHITEN.replace(
        "out_channels: 8, kernel_size: 2, init: whiten", "out_channels: 10, kernel_size: 2, init: whiten"
    )
    assert bad != WHITEN
    with pytest.raises(ShapeError) as caught:
        cnnspec.check(cnnspec.loads(bad))  # what `cnnspec validate` runs
    text = str(caught.value)
    assert text.startswith("<string>:5:") and "at most 2·C·kH·kW = 2·1·2·2 = 8, got 10" in text  # located
