"""Run `cnnspec` in this process and fail on anything but a clean exit.

typer's CliRunner catches every exception a command raises: a bug becomes exit code 1 with
empty output and no traceback text, so neither the exit code nor `"Traceback" not in
output` tells it from a user error. What does tell them apart is `result.exception`: a
clean exit (0, a located user error through `typer.Exit(1)`, a usage error exiting 2)
reaches the runner as SystemExit or as nothing; any other exception is a bug, and
`assert_clean_exit` fails the test with its traceback.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping

import pytest
from typer.testing import CliRunner, Result

from cnnspec.commands.app import app


def assert_clean_exit(result: Result) -> None:
    """Fail when the command ended in an exception other than SystemExit (a bug, not a user error)."""
    exc = result.exception
    if exc is None or isinstance(exc, SystemExit):
        return
    trace = "".join(traceback.format_exception(exc))
    pytest.fail(f"cnnspec raised {type(exc).__name__} (exit code {result.exit_code}):\n{trace}", pytrace=False)


def run_cli(*args: str, env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
    """`cnnspec ARGS` through typer's CliRunner (stdout and stderr apart), checked by `assert_clean_exit`."""
    result = CliRunner(env=env).invoke(app, list(args), input=input)
    assert_clean_exit(result)
    return result
