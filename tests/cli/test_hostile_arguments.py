"""Command-line arguments a script or a hostile user passes: empty values, escape sequences.

Real `python -m cnnspec` processes: what reaches the terminal is the process's own stderr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "specs" / "digits.yaml"
ESC = "\x1b"


def console(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (("train", str(DIGITS), "--out", ""), "--out ''"),
        (("train", str(DIGITS), "--out="), "--out=''"),
        (("export", "run", "-o", ""), "-o ''"),
        (("validate", ""), "''"),
    ],
)
def test_an_empty_argument_is_refused_before_anything_is_written(
    tmp_path: Path, args: tuple[str, ...], shown: str
) -> None:
    # An unset shell variable (`--out "$OUT"`) is '' and a Path of '' is '.': without the check `train`
    # trained into the working folder and `export` called it "a directory".
    result = console(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {shown}: an empty value; give a path, a name or a number"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        (str(DIGITS), "--set", f"optimizer.lr={ESC}[31mred"),
        (str(DIGITS), "--set", f"optim{ESC}]0;title{chr(7)}izer.lr=0.1"),
        (f"missing{ESC}[2J.yaml",),
    ],
    ids=["in a --set value", "in a --set path", "in a spec path"],
)
def test_an_escape_sequence_in_an_argument_is_shown_escaped_in_the_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = console("validate", *args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "error:" in result.stderr
    assert ESC not in result.stderr and chr(7) not in result.stderr
    assert "\\x1b" in result.stderr


def test_an_escape_sequence_in_a_command_name_is_shown_escaped(tmp_path: Path) -> None:
    result = console(f"{ESC}[2J", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: no such command '\\x1b[2J'."
