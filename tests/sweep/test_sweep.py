"""`cnnspec sweep` on digits: static pruning of impossible kernels, best.yaml, resume, mismatched resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.sweep._helpers import study_trials, write_spec

pytestmark = pytest.mark.slow


def test_impossible_kernels_are_pruned_statically_and_the_rest_train(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    import cnnspec

    spec = write_spec(tmp_path)
    out = tmp_path / "sw"
    result = run_cli("sweep", str(spec), "--out", str(out))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    trials = study_trials(out)
    assert len(trials) == 6
    assert len({t.number for t in trials}) == 6
    for t in trials:
        if t.params["model.layers.2.conv2d.kernel_size"] == 11:
            assert t.state == TrialState.PRUNED
            assert "smaller than the kernel" in t.user_attrs["pruned"]
            assert "--set model.layers.2.conv2d.kernel_size=11" in t.user_attrs["pruned"]  # located
            assert t.user_attrs["check_ms"] < 50
            assert not (out / "trials" / f"{t.number:04d}").exists()  # no training
        else:
            assert t.state == TrialState.COMPLETE
            assert (out / "trials" / f"{t.number:04d}" / "result.json").is_file()
    states = {t.state for t in trials}
    assert states == {TrialState.PRUNED, TrialState.COMPLETE}, states
    assert "rejected by the static check in" in result.output
    best = cnnspec.load(out / "best.yaml")
    cnnspec.check(best)
    assert best.sweep is None
    best_trial = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert best.optimizer.lr == best_trial.params["optimizer.lr"]
    assert (out / "parallel_coordinates.png").stat().st_size > 0


def test_resume_continues_to_the_requested_count_without_duplicates(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, trials=3)
    out = tmp_path / "sw"
    assert run_cli("sweep", str(spec), "--out", str(out)).exit_code == 0
    again = run_cli("sweep", str(spec), "--out", str(out))
    assert again.exit_code == 1 and "--resume" in again.output
    assert run_cli("sweep", str(spec), "--out", str(out), "--resume", "--trials", "5").exit_code == 0
    trials = study_trials(out)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]


def test_resume_with_another_space_is_refused(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, trials=1)
    out = tmp_path / "sw"
    assert run_cli("sweep", str(spec), "--out", str(out)).exit_code == 0
    spec.write_text(spec.read_text().replace("1.0e-2]", "2.0e-2]"))
    result = run_cli("sweep", str(spec), "--out", str(out), "--resume")
    assert result.exit_code == 1
    assert "another spec or search space" in result.output


def test_a_space_path_the_spec_does_not_have_is_a_located_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("optimizer.lr:", "optimizer.learning_rate:"))
    result = run_cli("sweep", str(spec), "--out", str(tmp_path / "sw"))
    assert result.exit_code == 1
    assert f"{spec}:21:5:" in result.output and "learning_rate" in result.output
    assert not (tmp_path / "sw" / "trials").exists()


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from optuna.trial import TrialState

    root = Path(__file__).resolve().parents[2]
    spec = write_spec(tmp_path, trials=3, epochs=30)
    out = tmp_path / "sw"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "sweep", str(spec), "--out", str(out)],
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((out / "trials").glob("*/metrics.jsonl")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert not [t for t in study_trials(out) if t.state == TrialState.RUNNING]
    spec.write_text(spec.read_text())  # the same spec: resume is allowed
    assert run_cli("sweep", str(spec), "--out", str(out), "--resume", "--trials", "1").exit_code == 0


def test_validate_reports_a_space_path_the_spec_does_not_have(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    assert run_cli("validate", str(spec)).exit_code == 0
    spec.write_text(spec.read_text().replace("model.layers.2.conv2d.kernel_size:", "model.layers.2.conv2d.kernal:"))
    result = run_cli("validate", str(spec))
    assert result.exit_code == 1
    assert f"{spec}:22:5:" in result.output and "kernel_size" in result.output  # located, the near name suggested
