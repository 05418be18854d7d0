"""`cnnspec sweep`'s library function: lock the sweep folder, open the study, run the workers, report."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnspec.errors import CnnspecError
from cnnspec.sweep.report import TrialRow, trial_rows, write_best, write_plots
from cnnspec.sweep.study import (
    SweepInterrupted,
    SweepPlan,
    WorkerExit,
    fail_orphans,
    load_plan_spec,
    local_storage,
    open_study,
    refuse_memory_storage,
    run_worker,
    run_workers,
    storage_errors,
)


def max_workers() -> int:
    """The most local worker processes a sweep starts: 4 a CPU core (each trains a model)."""
    return 4 * (os.cpu_count() or 1)


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

    The spec file is read once, here: an edit of it while the sweep runs changes nothing. The sweep
    folder (default sweeps/NAME) is locked while this runs, its local workers included (they inherit
    the lock): a second coordinator on it is refused; workers joining the study through --storage
    from elsewhere are not coordinators. A refused sweep leaves nothing in a folder it created.
    Ctrl-C: no new trial starts, and SweepInterrupted (a KeyboardInterrupt) is raised once the running
    ones ended."""
    from cnnspec.rundir.files import writing
    from cnnspec.rundir.lock import RunLock
    from cnnspec.rundir.paths import LOCK_NAME
    from cnnspec.spec.load import loads
    from cnnspec.spec.source import read_spec_text
    from cnnspec.sweep.space import sweep_of

    spec_path = Path(spec_path)
    text = read_spec_text(spec_path)
    spec = loads(text, str(spec_path))
    folder = Path(out) if out is not None else Path("sweeps") / spec.name
    count = trials or sweep_of(spec).trials
    if workers > max_workers():
        raise CnnspecError(
            f"--workers {workers}: more than {max_workers()} local workers (4 a CPU core) only slow each other",
            hint=f"give --workers {max_workers()} or fewer; add machines with --storage",
        )
    plan = SweepPlan(spec_path, text, folder, storage or local_storage(folder), count)
    refuse_memory_storage(plan.storage)
    load_plan_spec(plan)  # the space checked before anything is written
    if resume and plan.default_storage and not (folder / "study.db").is_file():
        raise CnnspecError(f"{folder}: no sweep to resume (no study.db)", hint="start it without --resume")
    created = not folder.exists()
    lock = RunLock(folder, "cnnspec sweep")
    with writing(folder / LOCK_NAME):  # a full disk, a read-only folder
        lock.acquire()
    try:
        with storage_errors(plan):
            try:
                open_study(plan, resume=resume)
            except BaseException:
                if created:  # refused before any trial: leave no folder behind
                    lock.release()
                    _remove_new_folder(folder)
                raise
            return _run(plan, workers, lock, say)
    finally:
        lock.release()


def _remove_new_folder(folder: Path) -> None:
    """The folder this refused command made, with the lock file and empty study.db it wrote."""
    from cnnspec.rundir.paths import LOCK_NAME

    for name in (LOCK_NAME, "study.db"):
        (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else appeared in it: not ours to remove
        folder.rmdir()


def _run(plan: SweepPlan, workers: int, lock: Any, say: Any) -> SweepResult:
    from cnnspec.rundir.files import writing

    ends: list[WorkerExit] = []
    interrupted = False
    try:
        if workers <= 1:
            run_worker(plan, say=say)
        else:
            ends, interrupted = run_workers(plan, workers, lock.fd)
    finally:
        orphans = fail_orphans(plan, [e.pid for e in ends])
    if interrupted:
        raise SweepInterrupted
    study, _ = open_study(plan, resume=True)
    rows = trial_rows(study)
    with writing(plan.out):
        best = write_best(study, plan.spec_text, str(plan.spec_path), plan.out)
        plots = write_plots(study, plan.out)
    return SweepResult(plan.out, rows, best, plots, orphans, [e.code for e in ends])
