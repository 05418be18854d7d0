"""Helpers for the review tests: run the real `cnnspec` command line and git."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
DATA = Path(__file__).resolve().parent / "data"


def cli_env() -> dict[str, str]:
    """The environment with this interpreter's scripts (the `cnnspec` entry point) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("COLUMNS", None)
    return env


def cnnspec(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `cnnspec ARGS` in this process (Typer's CliRunner) from `cwd`, capturing its output.

    In-process keeps the tests fast; the tests that need the installed `cnnspec` script or a
    fresh interpreter (no torch imported, git textconv, CI steps) start a real process.
    """
    from typer.testing import CliRunner

    from cnnspec.commands.app import app

    before = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["cnnspec", *args], result.exit_code, result.stdout, result.stderr)


def git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60)
    return proc.stdout


def git_repo(path: Path) -> Path:
    """An empty git repository with an identity, so commits work on any machine."""
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "user.email", "test@example.com", cwd=path)
    git("config", "user.name", "test", cwd=path)
    git("config", "commit.gpgsign", "false", cwd=path)
    return path
