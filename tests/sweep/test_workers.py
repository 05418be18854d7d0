"""Two worker processes on one SQLite study: no duplicate or lost trials, and a worker killed mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sweep._helpers import study_trials, write_spec

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def sweep_process(spec: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    # One intra-op thread per worker: two workers of two threads each, beside the other xdist worker,
    # spin against each other on two cores (the trials are a 1-channel 8×8 CNN).
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "sweep", str(spec), "--out", str(out), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def assert_whole(out: Path, trials: int, storage: str | None = None) -> list:
    from optuna.trial import TrialState

    found = study_trials(out, storage=storage)
    numbers = [t.number for t in found]
    assert len(numbers) == len(set(numbers))  # no duplicates
    assert sorted(numbers) == list(range(len(numbers)))  # none lost
    finished = [t for t in found if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= trials
    assert not [t for t in found if t.state == TrialState.RUNNING]
    for t in found:
        if t.state == TrialState.COMPLETE:
            assert (out / "trials" / f"{t.number:04d}" / "result.json").is_file()
    return found


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    spec, out = write_spec(tmp_path, trials=6), tmp_path / "sw"
    proc = sweep_process(spec, out, "--workers", "2")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "[worker 0]" in output and "[worker 1]" in output
    found = assert_whole(out, 6)
    assert len(found) <= 6 + 1  # at most one trial over: both workers may start one as the count is reached


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def wait_for_a_trial_in_training(proc: subprocess.Popen[str], out: Path, storage: str | None = None) -> int:
    """The pid of a worker that is training a trial: RUNNING in the study, its folder made, no result.json."""
    import socket

    from optuna.trial import TrialState
    from sqlalchemy.exc import OperationalError

    host = socket.gethostname()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before a worker could be killed:\n{proc.communicate()[0]}")
        workers = _children(proc.pid)
        try:
            # Read the study only once a trial's folder exists: the study and its tables are made by then
            # (a reader that opens study.db earlier makes the tables too, racing the sweep's own making).
            trials = study_trials(out, storage=storage) if (out / "trials").is_dir() else []
        except (KeyError, OperationalError):  # the study is not made yet, or this reader races its tables' making
            trials = []
        for t in trials:
            folder = out / "trials" / f"{t.number:04d}"
            running = t.state == TrialState.RUNNING and folder.is_dir() and not (folder / "result.json").exists()
            for pid in workers:
                if running and t.user_attrs.get("worker") == f"{host}:{pid}":
                    return pid
        time.sleep(0.2)
    raise AssertionError("no trial started training within 300 s")


def test_a_worker_killed_mid_trial_leaves_a_study_that_completes(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    spec, out = write_spec(tmp_path, trials=6, epochs=4), tmp_path / "sw"
    proc = sweep_process(spec, out, "--workers", "2")
    victim = wait_for_a_trial_in_training(proc, out)
    os.kill(victim, signal.SIGKILL)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    found = assert_whole(out, 6)
    assert [t for t in found if t.state == TrialState.FAIL], output  # the killed worker's trial
