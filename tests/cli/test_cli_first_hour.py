"""A new user's first commands: `cnnspec`, `--version`, `-h`, and help that reads the same everywhere.

The help must speak in placeholders (`SPEC`, `RUN`, `MODEL`, `text|json`), never typer's Python
types (`<bool>`, `<list[Path]>`, `{spec}`), and point at nothing a pip install lacks (docs/*.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnspec.commands.app import COMMANDS
from cnnspec.version import __version__
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
WIDE = {"COLUMNS": "200"}  # one line per option: a placeholder is never wrapped away from its option

# The commands that print results: each takes --format.
RESULT_COMMANDS = ["validate", "summary", "diff", "train", "evaluate", "export", "predict", "bench"]


def console(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point (`python -m cnnspec` is the console script's `cnnspec.cli:main`)."""
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_version_prints_the_version_and_exits_0() -> None:
    done = console("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"cnnspec {__version__}\n"


def test_bare_cnnspec_prints_the_help_and_exits_0() -> None:
    done = console()
    assert done.returncode == 0, done.stderr
    assert "Usage: python -m cnnspec [OPTIONS] COMMAND [ARGS]..." in done.stdout
    assert all(name in done.stdout for name in COMMANDS)


@pytest.mark.parametrize("args", [["-h"], ["summary", "-h"], ["predict", "-h"]], ids=" ".join)
def test_dash_h_is_help(args: list[str]) -> None:
    result = run_cli(*args, env=WIDE)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].strip().startswith(f"Usage: cnnspec {' '.join(args[:-1])}".rstrip())
    assert "Show this message and exit." in result.stdout


def _help(name: str | None) -> str:
    result = run_cli(*([name] if name else []), "--help", env=WIDE)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_help_uses_placeholders_not_python_types(name: str | None) -> None:
    text = _help(name)
    assert not re.search(r"<[a-zA-Z]", text), text  # <bool>, <path>, <list[Path]>, <int range>
    assert "list[" not in text and "{" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    placeholders = usage.split(f"cnnspec {name}" if name else "cnnspec", 1)[1]
    assert all(word.isupper() for word in re.findall(r"[A-Za-z_]+", placeholders)), usage


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_help_points_at_no_file_a_pip_install_lacks(name: str | None) -> None:
    assert not re.search(r"docs/|\.md\b|README", _help(name))


@pytest.mark.parametrize(
    ("name", "placeholders"),
    [
        ("validate", ["SPEC...", "text|json|github", "KEY=VALUE"]),
        ("summary", ["SPEC", "FILE"]),
        ("train", ["[SPEC]", "RUN", "N"]),
        ("evaluate", ["RUN", "best|last", "test|val"]),
        ("export", ["RUN", "FILE"]),
        ("predict", ["MODEL", "IMAGE...", "K"]),
    ],
)
def test_help_names_the_placeholders_a_user_types(name: str, placeholders: list[str]) -> None:
    text = _help(name)
    for word in placeholders:
        assert re.search(rf"(?<![\w|]){re.escape(word)}(?![\w|])", text), f"{word} not in {name} --help"


@pytest.mark.parametrize("name", RESULT_COMMANDS)
def test_every_command_that_prints_results_takes_format(name: str) -> None:
    assert re.search(r"--format\s+-f\s+text\|[a-z|]*json", _help(name))
