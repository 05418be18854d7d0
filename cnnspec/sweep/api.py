"""`cnnspec sweep`'s library function: lock the sweep folder, open the study, run the workers, report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnspec.sweep.report import TrialRow, trial_rows, write_best, write_plots
from cnnspec.sweep.study import (
    SweepPlan,
    WorkerExit,
    fail_orphans,
    local_storage,
    open_study,
    run_worker,
    run_workers,
)


@dataclass(frozen=True)
class SweepResult:
    out: Path
    rows: list[TrialRow]
    best: Path | None
    plots: list[Path]
    orphans: list[int]  # trials whose worker died, marked failed
    worker_codes: list[int]


def sweep(
    spec_path: str | Path,
    out: str | Path | None = None,
    *,
    trials: int | None = None,
    storage: str | None = None,
    workers: int = 1,
    resume: bool = False,
    say: Any = print,
) -> SweepResult:
    """Run the spec's sweep to `trials` finished trials (default sweep.trials) and write its report.

    The sweep folder (default sweeps/NAME) is locked while this runs: a second coordinator on it is
    refused; workers joining the study through --storage from elsewhere are not coordinators."""
    from cnnspec.rundir.lock import locked
    from cnnspec.spec.load import load
    from cnnspec.spec.source import read_spec_text
    from cnnspec.sweep.space import sweep_of

    spec_path = Path(spec_path)
    spec = load(spec_path)
    folder = Path(out) if out is not None else Path("sweeps") / spec.name
    count = trials or sweep_of(spec).trials
    with locked(folder, "cnnspec sweep"):
        plan = SweepPlan(spec_path, folder, storage or local_storage(folder), count)
        open_study(plan, resume=resume)
        ends: list[WorkerExit] = []
        try:
            if workers <= 1:
                run_worker(plan, say=say)
            else:
                ends = run_workers(plan, workers)
        finally:
            orphans = fail_orphans(plan, [e.pid for e in ends])
        study, _ = open_study(plan, resume=True)
        rows = trial_rows(study)
        best = write_best(study, read_spec_text(spec_path), str(spec_path), folder)
        plots = write_plots(study, folder)
    return SweepResult(folder, rows, best, plots, orphans, [e.code for e in ends])
