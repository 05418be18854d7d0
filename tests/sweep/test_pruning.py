"""The pruning callback stops a trial's training through the hooks, after an epoch's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sweep._helpers import write_spec

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("lower", "epochs_run", "state"), [(1.1, 1, "PRUNED"), (0.0, 3, "COMPLETE")])
def test_a_trial_the_pruner_stops_trains_one_epoch(tmp_path: Path, lower: float, epochs_run: int, state: str) -> None:
    import optuna

    import cnnspec
    from cnnspec.sweep.study import PruningCallback

    spec = cnnspec.load(write_spec(tmp_path, epochs=3))
    # ThresholdPruner(lower=1.1): no accuracy reaches 1.1, so it prunes at the first report; lower=0: never.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=lower))

    def objective(trial: optuna.Trial) -> float:
        cb = PruningCallback(trial, "val_accuracy")
        cnnspec.train(spec, tmp_path / "run", progress=False, callbacks=[cb])
        assert cb.best is not None
        return cb.best

    study.optimize(objective, n_trials=1)
    assert study.trials[0].state.name == state
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs_run + 1))
