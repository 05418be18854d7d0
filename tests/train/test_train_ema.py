"""train.ema (the averaged weights validate, test and are exported; a resume restores the average exactly)
and train.freeze_bn_weight (gamma fixed, beta trained), on real digits runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import cnnspec
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights
from tests.train._train_helpers import DIGITS_FAST

EMA_SPEC = DIGITS_FAST.replace(
    "schedule: {name: cosine, warmup_epochs: 1}\ntrain: {epochs: 2, seed: 3}",
    "schedule: {name: constant}\ntrain: {epochs: 1, seed: 3, ema: {decay: 0.9, every: 2}}",
)


def _spec(tmp_path: Path, text: str) -> Path:
    assert text != DIGITS_FAST  # the replacement above found its text
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _model_with(spec: Path, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = cnnspec.build(cnnspec.load(spec))
    model.load_state_dict(weights)
    return model.eval()


@pytest.mark.slow
def test_ema_weights_differ_from_the_trained_ones_and_are_what_export_writes(tmp_path: Path) -> None:
    spec = _spec(tmp_path, EMA_SPEC)
    run = cnnspec.train(spec, out=tmp_path / "run", progress=False)
    paths = RunPaths(run)
    state = load_state(paths.state)
    raw, saved = state["model"], read_weights(paths.weights("last"))
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert set(saved) == set(raw) == set(ema)
    for key, value in saved.items():
        torch.testing.assert_close(value, ema[key], rtol=0, atol=0)  # last.safetensors is the average
    floats = [k for k, v in raw.items() if v.is_floating_point()]
    assert any(not torch.equal(raw[k], ema[k]) for k in floats)  # ... and not the trained weights
    torch.testing.assert_close(read_weights(paths.weights("best"))[floats[0]], ema[floats[0]])  # epoch 1 is best

    onnx = cnnspec.export(run)
    x = torch.rand(16, 1, 8, 8)
    exported = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        from_ema = _model_with(spec, ema)(x).numpy()
        from_raw = _model_with(spec, raw)(x).numpy()
    np.testing.assert_allclose(exported, from_ema, rtol=1e-4, atol=1e-4)
    assert np.abs(exported - from_raw).max() > 1e-3  # export did not write the trained weights


@pytest.mark.slow
def test_resume_restores_the_average_exactly(tmp_path: Path) -> None:
    spec = _spec(tmp_path, EMA_SPEC)
    straight = cnnspec.train(spec, out=tmp_path / "straight", overrides=["train.epochs=2"], progress=False)
    halves = cnnspec.train(spec, out=tmp_path / "halves", progress=False)
    cnnspec.train(resume=halves, overrides=["train.epochs=2"], progress=False)  # constant lr: the same steps
    a, b = load_state(RunPaths(straight).state), load_state(RunPaths(halves).state)
    assert a["ema"].keys() == b["ema"].keys()
    for key in a["ema"]:
        torch.testing.assert_close(a["ema"][key], b["ema"][key], rtol=0, atol=0)
    for key, value in read_weights(RunPaths(straight).weights("last")).items():
        torch.testing.assert_close(value, read_weights(RunPaths(halves).weights("last"))[key], rtol=0, atol=0)


@pytest.mark.slow
def test_freeze_bn_weight_keeps_gamma_and_trains_beta(tmp_path: Path) -> None:
    text = DIGITS_FAST.replace("train: {epochs: 2, seed: 3}", "train: {epochs: 1, seed: 3, freeze_bn_weight: true}")
    run = cnnspec.train(_spec(tmp_path, text), out=tmp_path / "run", progress=False)
    weights = read_weights(RunPaths(run).weights("last"))
    gammas = [k for k in weights if k.endswith(".weight") and weights[k].ndim == 1]
    assert gammas  # the spec has a batchnorm
    for key in gammas:
        torch.testing.assert_close(weights[key], torch.ones_like(weights[key]), rtol=0, atol=0)  # BatchNorm's init
        assert weights[key.removesuffix("weight") + "bias"].abs().max() > 1e-4  # bias starts at 0 and trains
