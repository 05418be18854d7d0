"""`cnnspec --help` lists every command once, in the order of the workflow, and each one answers --help."""

from __future__ import annotations

import re

import pytest

from tests.cli_helpers import run_cli

# The workflow: write a spec, check it, review it, train, ship it; then the schema for editors.
WORKFLOW = [
    "init",
    "validate",
    "summary",
    "graph",
    "fmt",
    "diff",
    "train",
    "evaluate",
    "runs",
    "sweep",
    "lr-find",
    "export",
    "quantize",
    "predict",
    "bench",
    "serve",
    "schema",
]
COMMAND_ROW = re.compile(r"^│ ([a-z-]+) {2,}\S")


def test_help_lists_the_commands_in_workflow_order() -> None:
    result = run_cli("--help", env={"COLUMNS": "100"})
    assert result.exit_code == 0
    panel = result.stdout.split("Commands", 1)[1]
    assert [m.group(1) for line in panel.splitlines() if (m := COMMAND_ROW.match(line))] == WORKFLOW


@pytest.mark.parametrize("name", WORKFLOW)
def test_every_listed_command_answers_help(name: str) -> None:
    result = run_cli(name, "--help", env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.stderr
    assert f" {name} " in result.stdout.splitlines()[1]  # Usage: cnnspec NAME [OPTIONS] ...
