"""A run's files tell where they came from: weights copied in from another run, a result.json left
by an earlier stage of the run, paths a run cannot record (issue 14's second attack).

Real runs (the tiny spec), the real command line in this process, a real killed child process.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.atomic import STOP_BEFORE_RENAME
from cnnspec.errors import CheckpointError
from cnnspec.rundir.files import writing
from tests.reliability._reliability_helpers import ROOT, assert_refused, child_env, cli


@pytest.fixture(scope="module")
def other_run(tiny_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second run of the same spec (another run id), trained with another seed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("other") / "run"
        return cnnspec.train(tiny_spec, out=out, overrides=["train.seed=11", "train.epochs=1"], progress=False)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["evaluate", "export", "resume"])
def test_weights_copied_in_from_another_run_are_refused(
    copy_run: Callable[[str], Path], other_run: Path, command: str
) -> None:
    run = copy_run("run")
    shutil.copy2(other_run / "checkpoints" / "best.safetensors", run / "checkpoints" / "best.safetensors")
    before = _files(run)
    resume: list[str | Path] = ["train", "--resume", run, "--set", "train.epochs=3"]
    args = resume if command == "resume" else [command, run]
    result = cli(*args)
    assert_refused(result, "best.safetensors was trained by another run")
    assert _files(run) == before  # nothing written


def _files(run: Path) -> dict[str, bytes]:
    """Every file of the run but its lock (which holds the last holder's pid and command)."""
    files = (p for p in run.rglob("*") if p.is_file() and p.name != ".cnnspec.lock")
    return {str(p.relative_to(run)): p.read_bytes() for p in files}


def test_a_killed_resume_leaves_no_result_of_the_earlier_epochs(copy_run: Callable[[str], Path]) -> None:
    # The run finished 2 epochs (result.json: done). A resume to 4 epochs is stopped by the atomic
    # writer's test hook just before its first metrics.jsonl rename (epoch 3's checkpoint is written), then
    # SIGKILLed: result.json must not still say the run is done with epoch 2's test accuracy.
    run = copy_run("run")
    assert (run / "result.json").is_file()
    env = {**child_env(), STOP_BEFORE_RENAME: "metrics.jsonl:1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "train", "--resume", str(run), "--set", "train.epochs=4", "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _state(child.pid) != "T":  # the hook stops the process with SIGSTOP
            assert child.poll() is None, "the resume ended before the hook stopped it"
            assert time.monotonic() < deadline, "the hook never stopped the resume"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not (run / "result.json").exists()
    result = cli("train", "--resume", run, "--set", "train.epochs=4", "--quiet")
    assert result.exception is None and result.code == 0, result.output
    assert (run / "result.json").is_file()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_an_out_folder_whose_name_is_not_utf8_is_refused_before_training(tiny_spec: Path, tmp_path: Path) -> None:
    os.chdir(tmp_path)
    result = cli("train", tiny_spec, "--out", os.fsdecode(b"run\xff\xfe"))
    assert_refused(result, "run\\xff\\xfe: the path is not valid UTF-8")
    assert list(tmp_path.iterdir()) == []


def test_an_out_link_to_a_missing_folder_is_named_as_such(tiny_spec: Path, tmp_path: Path) -> None:
    link = tmp_path / "dl"
    link.symlink_to(tmp_path / "nowhere" / "d")
    result = cli("train", tiny_spec, "--out", link)
    assert_refused(result, f"is a symbolic link to {tmp_path / 'nowhere' / 'd'}, which does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl"]


@pytest.mark.parametrize("resumable", [True, False])
def test_a_failed_write_suggests_resume_only_for_a_run_that_can_resume(tmp_path: Path, resumable: bool) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    if resumable:
        (run / "checkpoints" / "last.state.pt").write_bytes(b"state")
    with pytest.raises(CheckpointError) as caught, writing(run / "checkpoints" / "best.safetensors"):
        raise OSError(errno.ENOSPC, "No space left on device")
    hint = caught.value.diagnostics[0].hint or ""
    assert ("--resume" in hint) is resumable, hint


def test_a_long_set_value_is_not_repeated_whole_in_the_error(tiny_spec: Path) -> None:
    result = cli("validate", tiny_spec, "--set", "optimizer.lr=" + "x" * 100_000)
    assert_refused(result, "optimizer.lr: expected a number")
    assert len(result.stderr) < 1_000
