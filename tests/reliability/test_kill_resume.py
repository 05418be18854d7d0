"""SIGKILL at 20 moments, chained: start → kill → resume → kill → … → resume to the end.

The moments are drawn from a seeded generator: during start-up and at a random point of an
epoch (random delays), and between a file's temporary copy and its rename. For the last
kind the child runs with cnnspec.atomic's test hook (CNNSPEC_TEST_STOP_BEFORE_RENAME=NAME:1),
which stops it with SIGSTOP once the temporary file of its first write of NAME is complete;
the test sees it stopped, checks the files there, and kills it: no race with the writer.
After every kill the checkpoints verify and load, and nothing already saved is lost; the
last resume finishes with no temporary file left, and its weights equal an uninterrupted
run's, bit for bit.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.atomic import STOP_BEFORE_RENAME, TMP_PREFIX, atomic_write_bytes
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.reader import load_trained
from cnnspec.rundir.weights import load_state, read_weights
from tests.reliability._reliability_helpers import (
    TINY,
    assert_checkpoints_finite_and_loadable,
    cli_child,
    report,
    temporaries,
)

pytestmark = pytest.mark.slow

KILLS = 20
EPOCHS = 80  # 4 steps and 3 checkpoint files per epoch; the kills use at most ~45 epochs
# The files every epoch writes, in order; a "write" kill stops the child at one of them.
EPOCH_FILES = ["metrics.jsonl", "best.safetensors", "last.safetensors", "last.state.pt"]
SEED = 20
TIMING = {"seconds", "images_per_second"}
# Imported once by the fork server; torch._dynamo is what torch.optim imports lazily (4 s).
PRELOAD = [
    "_reliability_helpers",
    "cnnspec.commands.app",
    "cnnspec.commands.run",
    "cnnspec.training.loop",
    "matplotlib.pyplot",
    "safetensors.torch",
    "torch._dynamo",
]


def _context() -> ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _wait(condition: Callable[[], bool], proc: BaseProcess, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.exitcode is not None:
            raise AssertionError(f"the run ended before the kill (exit {proc.exitcode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for the run:\n{log.read_text()}")
        time.sleep(0.001)


def _lines(log: Path, prefix: str) -> int:
    try:
        return sum(line.startswith(prefix) for line in log.read_text().splitlines())
    except FileNotFoundError:
        return 0


def _has_lines(log: Path, prefix: str, count: int) -> Callable[[], bool]:
    return lambda: _lines(log, prefix) >= count


def _stopped(pid: int) -> bool:
    """True once the process is stopped by a signal (the state field of Linux's /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] == "T"


def _complete(path: Path, name: str) -> None:
    """`path` holds a whole file of kind `name`: it parses and verifies against its own hash."""
    if name == "metrics.jsonl":
        lines = path.read_text().splitlines()
        assert lines and all(json.loads(line)["epoch"] for line in lines)
    elif name == "last.state.pt":
        load_state(path)
    else:
        read_weights(path)


def _check_stopped_write(folder: Path, name: str, before: bytes | None) -> None:
    """The child is stopped between writing `name`'s temporary file and its rename: the temporary
    file is complete, and `name` itself is the file as it was before the child started (or absent)."""
    temporary = [p for p in folder.iterdir() if p.name.startswith(f"{TMP_PREFIX}{name}.")]
    assert len(temporary) == 1, f"no temporary file of {name}: {sorted(p.name for p in folder.iterdir())}"
    _complete(temporary[0], name)
    target = folder / name
    assert (target.read_bytes() if target.exists() else None) == before, f"{name} was changed before its rename"


def _metrics(run: Path) -> list[dict[str, object]]:
    lines = RunPaths(run).metrics.read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def _check_after_kill(run: Path, previous_epoch: int) -> int:
    """What a kill leaves loads and verifies, and holds at least what was saved before."""
    paths = RunPaths(run)
    state = load_state(paths.state)  # torch.load(weights_only=True) + the state's hash
    assert torch.load(paths.state, map_location="cpu", weights_only=True)["format"] == 1
    assert state["epoch"] >= previous_epoch, "a kill lost a saved epoch"
    read_weights(paths.weights("best"))
    trained = load_trained(run, "last")  # builds the model, loads last.safetensors strictly
    assert trained.model is not None
    assert assert_checkpoints_finite_and_loadable(run) == 3
    assert len(_metrics(run)) >= state["epoch"]  # every line parses (written atomically)
    return int(state["epoch"])


def test_twenty_sigkills_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.replace("epochs: 2", f"epochs: {EPOCHS}"), encoding="utf-8")
    reference = cnnspec.train(spec, out=tmp_path / "reference", progress=False)

    run = tmp_path / "killed"
    paths = RunPaths(run)
    rng = random.Random(SEED)
    kinds = ["startup"] * 2 + ["epoch"] * 10 + ["write"] * 7
    rng.shuffle(kinds)
    kinds = ["epoch", *kinds]  # the first run must save a state before it can be resumed
    ctx = _context()
    saved_epochs: list[int] = []
    mid_write = 0
    epoch = 0
    stopped_at: list[str] = []
    for i, kind in enumerate(kinds):
        log = tmp_path / f"log{i}.txt"
        log.touch()  # a child killed at start-up may not have opened it yet
        args = ["train", str(spec), "--out", str(run)] if i == 0 else ["train", "--resume", str(run)]
        env: dict[str, str] = {}
        if kind == "write":
            name = rng.choice(EPOCH_FILES)
            folder = run if name == "metrics.jsonl" else paths.checkpoints
            before = (folder / name).read_bytes() if (folder / name).exists() else None
            env[STOP_BEFORE_RENAME] = f"{name}:1"
        proc = ctx.Process(target=cli_child, args=(args, str(log), env))
        proc.start()
        try:
            if kind == "write":
                _wait(functools.partial(_stopped, proc.pid or 0), proc, log)
                _check_stopped_write(folder, name, before)
                os.kill(proc.pid or 0, signal.SIGKILL)
                proc.join(timeout=60)
                _check_stopped_write(folder, name, before)  # the kill left both as they were
                stopped_at.append(name)
            elif kind == "startup":
                time.sleep(rng.uniform(0.0, 0.3))
                os.kill(proc.pid or 0, signal.SIGKILL)
            else:
                if i == 0:
                    _wait(paths.state.is_file, proc, log)
                else:
                    _wait(_has_lines(log, "resuming", 1), proc, log)
                target = _lines(log, "epoch ") + rng.randint(0, 2)
                _wait(_has_lines(log, "epoch ", target), proc, log)
                time.sleep(rng.uniform(0.0, 0.05))
                os.kill(proc.pid or 0, signal.SIGKILL)
        finally:
            proc.join(timeout=60)
            if proc.exitcode is None:
                proc.kill()
        assert proc.exitcode == -signal.SIGKILL, f"round {i}: exit {proc.exitcode}\n{log.read_text()}"
        assert "Traceback" not in log.read_text()
        if temporaries(run):  # killed between writing a temporary file and its rename
            mid_write += 1
        epoch = _check_after_kill(run, epoch)
        saved_epochs.append(epoch)
    assert epoch < EPOCHS, "the kills came too late: the run had already finished"

    log = tmp_path / "final.txt"
    proc = ctx.Process(target=cli_child, args=(["train", "--resume", str(run)], str(log)))
    proc.start()
    proc.join(timeout=300)
    text = log.read_text()
    assert proc.exitcode == 0, text
    assert "Traceback" not in text
    assert temporaries(run) == [], "a temporary file was left behind"

    ours, ref = read_weights(paths.weights("last")), read_weights(RunPaths(reference).weights("last"))
    assert ours.keys() == ref.keys()
    assert [k for k in ref if not torch.equal(ours[k], ref[k])] == [], "weights differ from the uninterrupted run"
    best, ref_best = read_weights(paths.weights("best")), read_weights(RunPaths(reference).weights("best"))
    assert all(torch.equal(best[k], ref_best[k]) for k in ref_best)
    assert _metrics(run) == _metrics(reference)
    result, expected = (json.loads((r / "result.json").read_text()) for r in (run, reference))
    assert (result["test_accuracy"], result["test_loss"], result["epochs"]) == (
        expected["test_accuracy"],
        expected["test_loss"],
        EPOCHS,
    )
    counts = Counter(kinds)
    report(
        "kill-resume",
        kills=len(kinds),
        during_startup=counts["startup"],
        inside_an_epoch=counts["epoch"],
        at_a_checkpoint_write=counts["write"],
        left_a_temporary_file=mid_write,
        stopped_before_renaming=",".join(stopped_at),
        saved_epoch_after_each_kill=",".join(map(str, saved_epochs)),
        lost_checkpoints=0,
        final_weights_equal=True,
    )


@pytest.mark.parametrize("setting", ["last.state.pt", "last.state.pt:0", ":1", "last.state.pt:x"])
def test_a_malformed_stop_setting_is_refused_and_leaves_the_file_alone(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook never guesses: a setting that is not NAME:N (N ≥ 1) fails the write, which changes nothing."""
    target = tmp_path / "last.state.pt"
    target.write_bytes(b"old")
    monkeypatch.setenv(STOP_BEFORE_RENAME, setting)
    with pytest.raises(ValueError, match=STOP_BEFORE_RENAME):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert temporaries(tmp_path) == []
