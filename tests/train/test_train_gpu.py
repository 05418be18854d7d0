"""CUDA: fp16 (autocast + GradScaler) and bf16 autocast, compile, out-of-memory reporting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.errors import TrainingError
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights
from tests.train._observe import Recorder

pytestmark = pytest.mark.gpu

SPEC = """
name: gpu-small
model:
  input: {channels: 3, height: 32, width: 32}
  layers:
    - conv2d: {out_channels: 32, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - maxpool2d: {kernel_size: 2}
    - conv2d: {out_channels: 64, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - global_avgpool
    - linear: {out_features: 10}
data:
  dataset: {name: synthetic, num_samples: 2048, num_classes: 10}
  batch_size: 128
  augment:
    - random_crop: {size: 32, padding: 4}
    - horizontal_flip
optimizer: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 5.0e-4}
schedule: {name: cosine}
train: {epochs: 3, device: cuda}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "gpu.yaml"
    path.write_text(SPEC)
    return path


def _result(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


@pytest.mark.parametrize("amp", ["fp16", "bf16", "auto"])
def test_amp_trains_and_keeps_fp32_weights(spec_file: Path, tmp_path: Path, amp: str) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    run = cnnspec.train(spec_file, out=tmp_path / amp, overrides=[f"train.amp={amp}"], progress=False)
    result = _result(run)
    assert result["amp"] == ("fp16" if amp == "auto" else amp)
    assert result["device"].startswith("cuda")
    # Not measured on a GPU (none lent). The same spec on the CPU (fp32, train.device=cpu), 8 seeds (0-7):
    # 0.516-0.861 on a 2-core x86 CPU, so 0.5 was too close; chance is 0.1.
    assert result["test_accuracy"] > 0.3
    weights = read_weights(RunPaths(run).weights("last"))
    assert all(t.dtype in (torch.float32, torch.int64) for t in weights.values())
    state = load_state(RunPaths(run).state)
    if result["amp"] == "fp16":
        assert state["scaler"]["scale"] > 0  # the GradScaler's state is saved for resume
        assert isinstance(result["skipped_steps"], int)
    else:
        assert state["scaler"] == {}  # disabled scaler: nothing to save


def test_fp16_resume_restores_the_grad_scaler(spec_file: Path, tmp_path: Path) -> None:
    recorder = Recorder(max_steps=1)
    run = cnnspec.train(
        spec_file,
        out=tmp_path / "r",
        overrides=["train.amp=fp16", "train.epochs=1"],
        progress=False,
        callbacks=[recorder],
    )
    assert recorder.start is not None
    steps = recorder.start.steps_per_epoch
    first = load_state(RunPaths(run).state)["scaler"]
    assert first["scale"] > 0 and "_growth_tracker" in first  # torch's GradScaler.state_dict(), saved
    cnnspec.train(resume=run, overrides=["train.epochs=2"], progress=False)
    assert _result(run)["epochs"] == 2
    second = load_state(RunPaths(run).state)["scaler"]
    skipped = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][1]["skipped_steps"]
    # GradScaler halves the scale at each skipped step and grows it only after 2,000 good steps in
    # a row. The restored scaler carries on from `first`; a fresh one would restart at 2**16
    # with its count of good steps at 0.
    assert second["scale"] == first["scale"] * 0.5**skipped
    if skipped == 0:
        assert second["_growth_tracker"] == first["_growth_tracker"] + steps


def test_bf16_autocast_and_channels_last_on_cuda(spec_file: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    recorder = Recorder(max_steps=5)
    cnnspec.train(
        spec_file,
        out=tmp_path / "cl",
        overrides=["train.channels_last=true", "train.epochs=1", "train.amp=bf16"],
        progress=False,
        callbacks=[recorder],
    )
    # Inside the forward: the first convolution computed in bfloat16 and in channels_last (32 channels).
    assert len(recorder.steps) == 5
    assert {s.conv_dtype for s in recorder.steps} == {torch.bfloat16}
    assert {s.conv_channels_last for s in recorder.steps} == {True}
    assert {s.logits.dtype for s in recorder.steps} == {torch.bfloat16}


def test_compile_trains_channels_last_weights(spec_file: Path, tmp_path: Path) -> None:
    recorder = Recorder(forward_hooks=False)  # the compiled forward is left as it is: only the start is seen
    run = cnnspec.train(
        spec_file,
        out=tmp_path / "c",
        overrides=["train.channels_last=true", "train.compile=true", "train.epochs=1", "train.amp=bf16"],
        progress=False,
        callbacks=[recorder],
    )
    assert recorder.start is not None
    convs = [m for m in recorder.start.model.modules() if isinstance(m, torch.nn.Conv2d)]
    # The second convolution's weight (64, 32, 3, 3) has two distinct layouts; the first's has 3 input channels.
    assert convs[1].weight.is_contiguous(memory_format=torch.channels_last) and not convs[1].weight.is_contiguous()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and math.isfinite(metrics[0]["train_loss"])
    assert _result(run)["epochs"] == 1


def test_out_of_memory_names_the_batch_size(tmp_path: Path) -> None:
    huge = SPEC.replace("out_channels: 32,", "out_channels: 65536,").replace("num_samples: 2048", "num_samples: 4096")
    huge = huge.replace("batch_size: 128", "batch_size: 4096")
    path = tmp_path / "huge.yaml"
    path.write_text(huge)
    with pytest.raises(TrainingError) as info:
        cnnspec.train(path, out=tmp_path / "oom", overrides=["train.amp=off", "data.val_split=0"], progress=False)
    diag = info.value.diagnostics[0]
    assert "out of memory at batch size 4096" in diag.message
    assert diag.hint is not None and "data.batch_size=2048" in diag.hint
