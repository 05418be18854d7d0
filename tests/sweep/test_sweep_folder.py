"""The sweep folder belongs to one study: another spec's sweep, a second coordinator while the first one's
workers train, or a spec edited mid-sweep never mixes into it; a refused sweep leaves no folder."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.sweep._helpers import study_trials, write_spec
from tests.sweep.test_workers import sweep_process, wait_for_a_trial_in_training

pytestmark = pytest.mark.slow


def test_a_spec_of_another_name_is_refused_in_the_folder(tmp_path: Path) -> None:
    import optuna

    spec, out = write_spec(tmp_path, trials=1), tmp_path / "sw"
    assert run_cli("sweep", str(spec), "--out", str(out)).exit_code == 0
    best = (out / "best.yaml").read_text()
    spec.write_text(spec.read_text().replace("name: digits-sweep", "name: other"))
    for extra in ((), ("--resume",)):
        result = run_cli("sweep", str(spec), "--out", str(out), *extra)
        assert result.exit_code == 1, result.output
        assert "holds the sweep of spec 'digits-sweep'" in result.output
    storage = f"sqlite:///{out / 'study.db'}"
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["digits-sweep"]
    assert (out / "best.yaml").read_text() == best


def test_a_refused_sweep_leaves_no_folder(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    assert run_cli("sweep", str(spec), "--out", str(tmp_path / "a"), "--resume").exit_code == 1
    spec.write_text(spec.read_text().replace("optimizer.lr:", "optimizer.learning_rate:"))
    assert run_cli("sweep", str(spec), "--out", str(tmp_path / "b")).exit_code == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_workers_hold_the_folder_after_their_coordinator_is_killed(tmp_path: Path) -> None:
    # 10 epochs: a trial trains long enough for the poll to see it (with 3, both trainable trials could end
    # between two polls on a fast machine, and the sweep with them).
    spec, out = write_spec(tmp_path, trials=3, epochs=10), tmp_path / "sw"
    proc = sweep_process(spec, out, "--workers", "2")
    wait_for_a_trial_in_training(proc, out)
    os.kill(proc.pid, signal.SIGKILL)
    second = run_cli("sweep", str(spec), "--out", str(out), "--resume")
    assert second.exit_code == 1, second.output
    assert "is being written by another cnnspec process" in second.output
    output, _ = proc.communicate(timeout=600)  # the workers' output: the pipe closes when they end
    assert "Traceback" not in output, output
    from optuna.trial import TrialState

    # The workers ran the sweep to its end: `trials` counts complete and pruned trials (a kernel the static
    # check rejects is pruned, and the sampler may pick it), so the count of COMPLETE alone may be below 3.
    counted = [t for t in study_trials(out) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) >= 3, output
    assert any(t.state == TrialState.COMPLETE for t in counted), output


def test_a_trial_failed_by_another_process_ends_its_worker_in_one_line(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    spec, out = write_spec(tmp_path, trials=2, epochs=20), tmp_path / "sw"
    proc = sweep_process(spec, out, "--workers", "2")
    wait_for_a_trial_in_training(proc, out)
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    study = optuna.load_study(study_name="digits-sweep", storage=storage)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # as a second coordinator did
    output, _ = proc.communicate(timeout=600)
    assert "Traceback" not in output, output
    assert "was marked failed by another process while this worker ran it" in output, output


def test_an_edit_of_the_spec_mid_sweep_changes_nothing(tmp_path: Path) -> None:
    spec, out = write_spec(tmp_path, trials=2, epochs=2), tmp_path / "sw"
    proc = sweep_process(spec, out)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((out / "trials").glob("*/metrics.jsonl")):
        time.sleep(0.2)
    spec.write_text(spec.read_text().replace("1.0e-2]", "2.0e-2]"))
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert (out / "best.yaml").is_file()
    assert all(t.params["optimizer.lr"] <= 1.0e-2 for t in study_trials(out))
