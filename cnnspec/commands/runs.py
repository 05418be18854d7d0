"""`cnnspec runs [DIR...]` and `cnnspec runs compare RUN RUN...`: run directories listed and compared (no torch)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cnnspec.commands.common import echo, fail
from cnnspec.errors import CnnspecError

# `cnnspec runs compare RUN...`: the word that makes `runs` compare (a folder named so is ./compare).
COMPARE = "compare"
# Where `cnnspec runs` looks when given no folder: train's default output folder, when there is one.
DEFAULT_FOLDER = Path("runs")


def not_a_folder(path: Path) -> CnnspecError:
    """The error for a `cnnspec runs` argument that is not a folder: what it is instead."""
    from cnnspec.atomic import describe_mode
    from cnnspec.terminal import printable

    hint = "name folders that hold run directories"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return CnnspecError(f"{printable(str(path))}: no such folder", hint=hint)
    except OSError as exc:
        return CnnspecError(f"{printable(str(path))}: cannot be read ({exc.strerror or exc})", hint=hint)
    return CnnspecError(f"{printable(str(path))} is {describe_mode(mode)}, not a folder", hint=hint)


class RunsFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def runs(
    folders: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Folders to look for runs in (default: ./runs when it exists, else the current folder); "
            "or `compare RUN RUN...`.",
            metavar="DIR",
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            metavar="COLUMN",
            help="Sort by run, status, name, architecture, params, macs, epochs, best_val_accuracy, "
            "test_accuracy (these two best first), wall_seconds or device.",
        ),
    ] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the order.")] = False,
    format: Annotated[RunsFormat, typer.Option("--format", "-f", help="text, json or markdown.")] = RunsFormat.text,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE.png", help="compare: write the overlaid curves to this PNG."),
    ] = None,
) -> None:
    """List run directories (one row per run), or compare runs: cnnspec runs compare RUN RUN... [-o FILE.png]."""
    from cnnspec.tracking import report
    from cnnspec.tracking.runs import COLUMNS, compare_runs, list_runs

    given = folders or []
    if given and given[0] == Path(COMPARE):
        if sort is not None or reverse:
            raise typer.BadParameter("--sort and --reverse are for the list of runs, not for compare")
        try:
            comparison = compare_runs(given[1:])
        except CnnspecError as exc:
            raise fail(exc) from None
        if out is not None:
            if out.suffix.lower() != ".png":
                raise typer.BadParameter(f"{out}: the curves are written as a PNG: name a FILE.png", param_hint="-o")
            from cnnspec.tracking.plot import plot_comparison

            try:
                plot_comparison(comparison, out)
            except CnnspecError as exc:  # a full disk, a folder that is not writable
                raise fail(exc) from None
        if format is RunsFormat.json:
            import json

            echo(json.dumps(report.comparison_data(comparison), indent=2))
        elif format is RunsFormat.markdown:
            echo(report.comparison_markdown(comparison), end="")
        else:
            echo(report.comparison_text(comparison))
        return
    if out is not None:
        raise typer.BadParameter("-o is for `cnnspec runs compare`", param_hint="-o")
    if sort is not None and sort not in COLUMNS:
        raise typer.BadParameter(f"no column {sort!r}; the columns are {', '.join(COLUMNS)}", param_hint="--sort")
    look_in = given or [DEFAULT_FOLDER if DEFAULT_FOLDER.is_dir() else Path(".")]
    for folder in look_in:
        if not folder.is_dir():
            raise fail(not_a_folder(folder))
    rows = list_runs(look_in, sort, reverse)
    if format is RunsFormat.json:
        echo(report.rows_json(rows))
    elif format is RunsFormat.markdown:
        echo(report.rows_markdown(rows), end="")
    else:
        echo(report.rows_text(rows))
