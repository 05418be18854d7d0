"""Ctrl-C ends a sweep: one that lands after a trial's last step too (no new trial, exit 130), workers
included; and failed (interrupted) trials do not count toward `trials`, so --resume runs the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import run_cli
from tests.sweep._helpers import study_trials, write_spec
from tests.sweep.test_workers import _children

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_ctrl_c_after_the_last_step_finishes_the_trial_and_starts_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna.trial import TrialState

    import cnnspec.sweep.study as study_module
    from cnnspec.sweep.api import sweep
    from cnnspec.sweep.study import SweepInterrupted

    class SignalAfterLastEpoch(study_module.PruningCallback):
        """A real SIGINT to this process once the last epoch's record is written: after the last step."""

        def on_epoch_end(self, record: dict[str, Any]) -> None:
            super().on_epoch_end(record)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(study_module, "PruningCallback", SignalAfterLastEpoch)
    spec = write_spec(tmp_path, trials=3, epochs=1)
    spec.write_text(spec.read_text().replace("{choice: [3, 11]}", "{choice: [3]}"))  # every trial trains
    with pytest.raises(SweepInterrupted):
        sweep(spec, tmp_path / "sw", say=lambda _: None)
    found = study_trials(tmp_path / "sw")
    assert [t.state for t in found] == [TrialState.COMPLETE]  # whole, and the only one


def test_one_sigint_to_the_coordinator_ends_its_workers(tmp_path: Path) -> None:
    spec, out = write_spec(tmp_path, trials=500, epochs=1), tmp_path / "sw"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "sweep", str(spec), "--out", str(out), "--workers", "2"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((out / "trials").glob("*/result.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # the coordinator alone, as `kill -INT PID` does
    try:
        output, _ = proc.communicate(timeout=240)  # 500 trials take far longer: the workers went on
    except subprocess.TimeoutExpired:
        for pid in _children(proc.pid):  # the workers, which would go on alone
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        raise
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert len(study_trials(out)) < 30, output


def test_failed_trials_do_not_count_toward_trials(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    spec, out = write_spec(tmp_path, trials=1), tmp_path / "sw"
    assert run_cli("sweep", str(spec), "--out", str(out)).exit_code == 0
    study = optuna.load_study(study_name="digits-sweep", storage=f"sqlite:///{out / 'study.db'}")
    for _ in range(2):  # two interrupted trials, as Ctrl-C leaves them
        study.tell(study.ask(), state=TrialState.FAIL)
    result = run_cli("sweep", str(spec), "--out", str(out), "--resume", "--trials", "2")
    assert result.exit_code == 0, result.output
    finished = [t for t in study_trials(out) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2, result.output


def test_a_resume_draws_new_points(tmp_path: Path) -> None:
    spec, out = write_spec(tmp_path, trials=1), tmp_path / "sw"
    assert run_cli("sweep", str(spec), "--out", str(out)).exit_code == 0
    assert run_cli("sweep", str(spec), "--out", str(out), "--resume", "--trials", "2").exit_code == 0
    first, second = study_trials(out)
    assert first.params["optimizer.lr"] != second.params["optimizer.lr"]
