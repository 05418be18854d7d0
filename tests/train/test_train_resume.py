"""Resume: a run stopped by Ctrl-C or SIGKILL continues and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights
from cnnspec.training.progress import Reporter
from tests.train._train_helpers import THREADS_ENV

# 53 steps per epoch; mixup, dropout and random crops make every RNG stream matter.
SPEC = """\
name: resume-me
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - maxpool2d: {kernel_size: 2}
    - flatten
    - dropout: {p: 0.2}
    - linear: {out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 24
  val_split: 0.1
  augment:
    - random_crop: {size: 8, padding: 1}
    - mixup: {alpha: 0.2}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}
schedule: {name: onecycle}
train: {epochs: 3, seed: 11, label_smoothing: 0.05, grad_clip: 5.0}
"""

TIMING = {"seconds", "images_per_second"}
STEPS_PER_EPOCH = 1293 // 24
STOP_AT = (2, 20)  # (epoch, step): well inside epoch 2

# Run in a child process: train, and at STOP_AT announce it on stdout and wait to be killed.
CHILD = """
import sys, time
import cnnspec
from cnnspec.training.progress import Reporter

class PauseAt(Reporter):
    epoch = 0
    def start_epoch(self, epoch, epochs, steps, done=0):
        self.epoch = epoch
    def update(self, step, loss, accuracy, images_per_second):
        if (self.epoch, step) == (int(sys.argv[3]), int(sys.argv[4])):
            print("paused", flush=True)
            time.sleep(600)

cnnspec.train(sys.argv[1], out=sys.argv[2], progress=PauseAt())
"""


class InterruptAt(Reporter):
    """Sends this process a real SIGINT (as Ctrl-C does) after a given step."""

    def __init__(self, epoch: int, step: int):
        self.at = (epoch, step)
        self.epoch = 0

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        self.epoch = epoch

    def update(self, step: int, loss: float, accuracy: float, images_per_second: float) -> None:
        if (self.epoch, step) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "resume.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def uninterrupted(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cnnspec.train(spec_file, out=tmp_path_factory.mktemp("ref") / "run", progress=False)


def _weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return read_weights(RunPaths(run).weights(which))


def _metrics(run: Path) -> list[dict]:
    lines = RunPaths(run).metrics.read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def _assert_same_run(run: Path, reference: Path) -> None:
    ours, ref = _weights(run), _weights(reference)
    assert ours.keys() == ref.keys()
    different = [k for k in ref if not torch.equal(ours[k], ref[k])]
    assert not different, f"weights differ from the uninterrupted run: {different}"
    assert _weights(run, "best").keys() == ref.keys()
    assert _metrics(run) == _metrics(reference)
    result, expected = (json.loads((r / "result.json").read_text()) for r in (run, reference))
    assert result["test_accuracy"] == expected["test_accuracy"]
    assert result["epochs"] == expected["epochs"] == 3


def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(spec_file: Path, uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        cnnspec.train(spec_file, out=out, progress=InterruptAt(*STOP_AT))
    state = load_state(RunPaths(out).state)
    assert (state["epoch"] + 1, state["tally"]["batches"]) == STOP_AT  # saved at the next step boundary
    assert state["step"] == STEPS_PER_EPOCH + STOP_AT[1]
    assert not (out / "result.json").exists()
    assert len(_metrics(out)) == 1

    cnnspec.train(resume=out, progress=False)
    _assert_same_run(out, uninterrupted)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_finishes_with_valid_checkpoints(
    spec_file: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    paths = RunPaths(out)
    env = {**os.environ, **THREADS_ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(spec_file), str(out), *map(str, STOP_AT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the child is inside epoch 2
        assert line.strip() == "paused", proc.stderr.read() if proc.stderr else line
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # What a kill leaves behind is readable: weights verify against their hash, the state loads.
    read_weights(paths.weights("last"))
    assert load_state(paths.state)["epoch"] == 1
    assert len(_metrics(out)) == 1

    cnnspec.train(resume=out, progress=False)
    assert [m["epoch"] for m in _metrics(out)] == [1, 2, 3]
    assert load_state(paths.state)["epoch"] == 3
    assert not list(paths.checkpoints.glob(".tmp-*")) and not list(out.glob(".tmp-*"))
    _assert_same_run(out, uninterrupted)


@pytest.mark.slow
def test_resuming_a_finished_run_only_rewrites_the_result(uninterrupted: Path) -> None:
    before = _weights(uninterrupted)
    cnnspec.train(resume=uninterrupted, progress=False)
    after = _weights(uninterrupted)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(_metrics(uninterrupted)) == 3


@pytest.mark.slow
def test_cli_ctrl_c_exits_130_with_a_resume_hint(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    env = {**os.environ, **THREADS_ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "train", str(spec_file), "--out", str(out), "--set", "train.epochs=50"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        if first.startswith("cpu threads: "):  # how torch's threads wait (cnnspec/cpu_tuning.py)
            first = proc.stderr.readline()
        assert first.startswith("epoch 1/50"), first  # the first epoch's line: its checkpoint is written
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert f"stopped; continue with: cnnspec train --resume {out}" in err
    assert "Traceback" not in err
    state = load_state(RunPaths(out).state)
    assert 1 <= state["epoch"] < 50
