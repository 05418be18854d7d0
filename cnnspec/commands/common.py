"""What the commands share: printing, the user-error exit, the rich consoles, shared options."""

from __future__ import annotations

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


def echo(text: str, *, stderr: bool = False, end: str = "\n") -> None:
    """Write plain text (no rich: importing it costs more than `cnnspec validate` itself)."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(text + end)


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
