"""What the commands share: printing, the user-error exit, the rich consoles, shared options."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from cnnspec.errors import CnnspecError

if TYPE_CHECKING:
    from rich.console import Console


# The exit status of a command whose output could not be written, as Python's own for a failed flush.
EXIT_OUTPUT_LOST = 120


def echo(text: str, *, stderr: bool = False, end: str = "\n") -> None:
    """Write plain text (no rich: importing it costs more than `cnnspec validate` itself).

    Standard output that cannot take it (a full disk, a closed descriptor, a reader gone) ends the
    command with EXIT_OUTPUT_LOST and one line on stderr; standard error that cannot is left unsaid."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        if stream is None:  # started with the descriptor closed (`>&-`)
            raise ValueError("standard output is closed")
        stream.write(text + end)
    except (OSError, ValueError) as exc:
        if stderr:
            return
        say_output_lost(exc)
        raise typer.Exit(EXIT_OUTPUT_LOST) from None


def say_output_lost(exc: BaseException) -> None:
    """One line on stderr for standard output that could not be written; nothing when its reader went
    away (`| head`: the reader chose to stop)."""
    if isinstance(exc, BrokenPipeError):
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr gone too: nothing to say it on
        sys.stderr.write(f"error: the output could not be written: {exc}\n")


def fail(exc: CnnspecError) -> typer.Exit:
    """Print a user error the way compilers do and return the exit to raise."""
    echo(exc.format(), stderr=True)
    return typer.Exit(1)


def is_pipe(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a pipe (a named FIFO, `<(...)`): its text can be read once, and not replaced."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


@functools.cache
def stdout_console() -> Console:
    """The rich console on stdout, for commands that draw tables; made on first use."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@functools.cache
def stderr_console() -> Console:
    """The rich console on stderr (notes, progress); made on first use."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class Which(StrEnum):
    """Which checkpoint of a run: export and evaluate."""

    best = "best"
    last = "last"


class Format(StrEnum):
    text = "text"
    json = "json"


# `--set`, as train, validate and summary take it: the same overrides, validated the same way.
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a spec value, e.g. --set optimizer.lr=0.05 (repeatable)."
    ),
]
