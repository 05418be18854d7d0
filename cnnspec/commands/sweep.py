"""`cnnspec sweep`: a thin wrapper over cnnspec.sweep.api.sweep (optuna and torch imported inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnspec.commands.common import fail, stderr_console, stdout_console


def sweep(
    spec: Annotated[Path, typer.Argument(help="Spec file with a sweep: section.", metavar="SPEC")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="DIR", help="Sweep folder; default sweeps/NAME.")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", min=1, metavar="N", help="Finished trials to run to; default sweep.trials."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage", metavar="URL", help="Optuna RDB URL (postgresql://…); default DIR/study.db (SQLite)."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, metavar="N", help="Local worker processes (at most 4 a CPU core).")
    ] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the study in DIR (or --storage).")] = False,
) -> None:
    """Search hyperparameters and architecture with Optuna; statically impossible candidates are pruned untrained."""
    from cnnspec.errors import CnnspecError
    from cnnspec.sweep.api import sweep as run_sweep
    from cnnspec.sweep.report import render_table

    err, stdout = stderr_console(), stdout_console()
    try:
        result = run_sweep(
            spec,
            out,
            trials=trials,
            storage=storage,
            workers=workers,
            resume=resume,
            say=lambda t: err.print(t, markup=False, highlight=False),
        )
    except CnnspecError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err.print(
            "stopped: no new trial started; a trial stopped mid-training is marked failed (it does not count "
            "toward the trials); continue with --resume",
            markup=False,
        )
        raise typer.Exit(130) from None
    stdout.print(render_table(result.rows), markup=False, highlight=False)
    for index, code in enumerate(result.worker_codes):
        if code != 0:
            how = f"signal {-code}" if code < 0 else f"exit {code}"
            err.print(f"worker {index} ended with {how}", markup=False)
    for number in result.orphans:
        err.print(f"trial {number}: its worker ended mid-trial; marked failed", markup=False)
    if result.best is not None:
        stdout.print(f"best spec: {result.best}", markup=False)
    else:
        stdout.print("no trial completed: no best spec", markup=False)
    for plot in result.plots:
        stdout.print(f"plot: {plot}", markup=False)
    if len(result.plots) < 2:
        stdout.print(
            "importances and parallel coordinates need 2 or more completed trials (with varied parameters)",
            markup=False,
        )


def lr_find(
    spec: Annotated[Path, typer.Argument(help="Spec file to test.", metavar="SPEC")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Folder for lr_find.png/.json; default lr_find/NAME."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=20, metavar="N", help="Optimizer steps of the ramp.")] = 200,
    min_lr: Annotated[float, typer.Option("--min-lr", metavar="LR", help="The ramp's first learning rate.")] = 1e-7,
    max_lr: Annotated[float, typer.Option("--max-lr", metavar="LR", help="The ramp's last learning rate.")] = 1.0,
) -> None:
    """The learning-rate range test: loss vs an exponentially rising lr, plotted, and a suggested lr."""
    from cnnspec.errors import CnnspecError
    from cnnspec.training.lr_find import lr_find as find

    try:
        result = find(spec, out, steps=steps, min_lr=min_lr, max_lr=max_lr)
    except CnnspecError as exc:
        raise fail(exc) from None
    stdout = stdout_console()
    stdout.print(f"suggested lr: {result.suggestion:.3g} (steepest descent of the smoothed loss)", markup=False)
    stdout.print(f"plot: {result.plot}", markup=False)
    stdout.print(f"record: {result.record}", markup=False)
