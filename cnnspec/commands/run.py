"""`cnnspec train` and `cnnspec evaluate`: thin wrappers over cnnspec.train (torch imported inside)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cnnspec.commands.common import Format, Overrides, Which, fail, is_pipe, stderr_console, stdout_console
from cnnspec.interrupts import Interrupted

if TYPE_CHECKING:
    from rich.console import Console


class Split(StrEnum):
    test = "test"
    val = "val"


def train(
    spec: Annotated[
        Path | None, typer.Argument(help="Spec file to train (optional with --resume).", metavar="SPEC")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="RUN",
            help="Run directory; default runs/NAME, the spec's name. An earlier run there is replaced.",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", metavar="RUN", help="Continue the run in this directory from its last checkpoint."),
    ] = None,
    overrides: Overrides = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    format: Annotated[
        Format, typer.Option("--format", "-f", help="text, or json (result.json's keys and the run's folder).")
    ] = Format.text,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            metavar="N",
            help="Train in N processes on this machine (DDP, launched with torchrun): one per GPU, "
            "or CPU processes (gloo). data.batch_size is per process.",
        ),
    ] = None,
) -> None:
    """Train a spec; writes checkpoints, metrics.jsonl, result.json and curves.png to the run directory."""
    from cnnspec import cpu_tuning

    cpu_tuning.tune_for_compute(processes=nproc or 1)  # before torch loads (the imports below)
    from cnnspec.errors import CnnspecError
    from cnnspec.training.api import train as run_training
    from cnnspec.training.distributed import PeerFailed, from_env
    from cnnspec.training.signals import TrainingInterrupted

    err, stdout = stderr_console(), stdout_console()

    if spec is None and resume is None:
        err.print("give a spec file to train, or --resume RUN to continue a run", markup=False)
        raise typer.Exit(2)
    if out is not None and resume is not None and out.resolve() != resume.resolve():
        err.print("--out and --resume name different folders; a resumed run stays in its own folder", markup=False)
        raise typer.Exit(2)
    try:
        dist = from_env()
    except CnnspecError as exc:
        raise fail(exc) from None
    if nproc is not None and nproc > 1:
        if dist.enabled:
            err.print("--nproc starts torchrun itself; under torchrun leave it out", markup=False)
            raise typer.Exit(2)
        raise typer.Exit(_launch(nproc, spec, out, resume, overrides or [], quiet, format))
    try:
        run = run_training(spec, out=out, resume=resume, overrides=overrides or [], progress=False if quiet else None)
    except PeerFailed:  # rank 0 failed and printed why
        raise typer.Exit(1) from None
    except CnnspecError as exc:
        if not dist.is_main:
            err.print(f"rank {dist.rank}:", markup=False)
        raise fail(exc) from None
    except TrainingInterrupted as exc:
        if dist.is_main:
            err.print(f"stopped; continue with: cnnspec train --resume {exc.run}", markup=False)
        raise typer.Exit(130) from None
    except Interrupted:  # Ctrl-C before training began (the command line's handler): nothing to say but that
        raise
    except KeyboardInterrupt:  # a second Ctrl-C: stopped without saving
        err.print("aborted", markup=False)
        raise typer.Exit(130) from None
    if dist.is_main:
        _print_result(run, stdout, format)


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory written by `cnnspec train`.", metavar="RUN")],
    which: Annotated[Which, typer.Option("--weights", help="best or last checkpoint.")] = Which.best,
    split: Annotated[Split, typer.Option("--split", help="test or val.")] = Split.test,
    format: Annotated[
        Format, typer.Option("--format", "-f", help="text or json (evaluation.json's keys).")
    ] = Format.text,
) -> None:
    """Test-set accuracy, top-5, precision/recall/F1 per class and their macro averages, and a confusion
    matrix (written to RUN/evaluation.json and confusion_matrix.png)."""
    from cnnspec.errors import CnnspecError
    from cnnspec.training.api import evaluate_run

    stdout = stdout_console()

    try:
        report = evaluate_run(run, which=which.value, split=split.value)
    except CnnspecError as exc:
        raise fail(exc) from None
    from cnnspec.terminal import cell, printable

    used = report["weights"]
    note = (
        f"note: {run} has no {which.value}.safetensors (it stopped inside its first epoch): "
        f"evaluated its {used} weights"
        if used != which.value
        else None
    )
    if format is Format.json:
        if note is not None:
            stderr_console().print(cell(note), markup=False)
        stdout.print(json.dumps(report, indent=2), markup=False)
        return
    tta = f", test-time augmentation: {' + '.join(report['tta'])} (logits averaged)" if report.get("tta") else ""
    stdout.print(_class_table(f"{run}: {split.value} set, {used} weights{tta}", report))
    if note is not None:
        stdout.print(cell(note), markup=False)
    stdout.print(
        f"{_overall(report)}  loss {report['loss']:.4f}\n"
        f"wrote {printable(run / 'evaluation.json')} and {printable(run / 'confusion_matrix.png')}",
        markup=False,
    )


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _class_table(title: str, report: dict[str, Any]) -> Any:
    """Per class: images, accuracy (recall), precision, recall and F1; the macro averages as the last row."""
    from rich.table import Table

    from cnnspec.terminal import cell

    table = Table(title=cell(title), title_justify="left")
    table.add_column("class")
    for column in ("images", "precision", "recall", "F1"):
        table.add_column(column, justify="right")
    for name, figures in report["per_class"].items():
        table.add_row(cell(name), str(figures["images"]), *(_figure(figures[k]) for k in ("precision", "recall", "f1")))
    table.add_section()
    table.add_row("macro average", "", *(_figure(report[f"macro_{k}"]) for k in ("precision", "recall", "f1")))
    return table


def _overall(report: dict[str, Any]) -> str:
    top5 = report.get("top5_accuracy")
    return (
        f"accuracy {report['accuracy']:.4f}"
        + (f"  top-5 {top5:.4f}" if top5 is not None else "")
        + (f"  ({report['images']} images)")
    )


def _launch(
    nproc: int,
    spec: Path | None,
    out: Path | None,
    resume: Path | None,
    overrides: list[str],
    quiet: bool,
    format: Format = Format.text,
) -> int:
    """`cnnspec train --nproc N ...`: check the spec here (one clear message for a mistake), then run
    `torchrun --standalone --nproc_per_node N -m cnnspec train ...` with the other arguments."""
    from cnnspec.checker.checker import check
    from cnnspec.errors import CnnspecError
    from cnnspec.training.distributed import launch
    from cnnspec.training.setup import resolve_spec

    if spec is not None and is_pipe(spec):  # every process would read it, and a pipe gives its text once
        raise fail(
            CnnspecError(
                f"{spec} is a pipe: train --nproc reads the spec in each of its {nproc} processes",
                hint="save the spec to a file and train that",
            )
        )
    try:
        check(resolve_spec(spec, resume, overrides)[0])
    except CnnspecError as exc:
        raise fail(exc) from None
    args = ["train"]
    if spec is not None:
        args.append(str(spec))
    if out is not None:
        args += ["--out", str(out)]
    if resume is not None:
        args += ["--resume", str(resume)]
    for item in overrides:
        args += ["--set", item]
    if quiet:
        args.append("--quiet")
    if format is not Format.text:
        args += ["--format", format.value]
    return launch(nproc, args)


def _print_result(run: Path, console: Console, format: Format = Format.text) -> None:
    from cnnspec.terminal import printable

    result = json.loads((run / "result.json").read_text(encoding="utf-8"))
    if format is Format.json:
        console.print(json.dumps({"run": str(run), **result}, indent=2), markup=False)
        return
    acc = result.get("test_accuracy")
    test = f"test accuracy {acc:.4f}, loss {result['test_loss']:.4f}" if acc is not None else "no test split"
    console.print(
        f"{printable(run)}: {test}; best epoch {result['best_epoch']} of {result['epochs']}, "
        f"{result['wall_seconds']:.1f}s on {result['device']}, amp {result['amp']}",
        markup=False,
    )
