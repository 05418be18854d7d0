"""The console script ends its process without the interpreter's tear-down (cnnspec.cli.end_process),
keeping what the shut-down does that matters: idle thread pools ended and non-daemon threads waited
for, atexit callbacks run, output flushed, the exit status kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ENDING = """
import atexit, sys, threading, time
from pathlib import Path
out = Path(sys.argv[1])

class Finalised:
    def __del__(self):
        out.joinpath("finalised").write_text("yes")

KEEP = Finalised()  # freed only by the interpreter's tear-down of this module
atexit.register(lambda: out.joinpath("atexit").write_text("yes"))

def late():
    time.sleep(0.3)
    out.joinpath("thread").write_text("yes")

threading.Thread(target=late).start()  # not a daemon: the process waits for it
from concurrent.futures import ThreadPoolExecutor
POOL = ThreadPoolExecutor(2)  # never shut down: its idle workers are told to end, as at Python's exit
POOL.submit(print, end="")
sys.stdout.write("unflushed output")  # no newline, no flush
sys.argv = ["cnnspec", *sys.argv[2:]]
from cnnspec.cli import main
main()
"""


@pytest.mark.parametrize(("args", "status"), [(["--version"], 0), (["validate", "no-such-file.yaml"], 1)])
def test_the_process_ends_with_the_commands_status_after_threads_and_atexit(
    tmp_path: Path, args: list[str], status: int
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", ENDING, str(tmp_path), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == status, proc.stderr
    assert proc.stdout.startswith("unflushed output"), proc.stdout
    assert (tmp_path / "thread").exists() and (tmp_path / "atexit").exists()
    assert not (tmp_path / "finalised").exists()  # the tear-down (which would free KEEP) was skipped


@pytest.mark.parametrize(
    ("code", "status", "stderr"), [(None, 0, ""), (3, 3, ""), (256 + 2, 2, ""), ("bad", 1, "bad\n")]
)
def test_a_system_exit_code_becomes_the_status_python_would_give(code: object, status: int, stderr: str) -> None:
    program = f"from cnnspec.cli import end_process\nend_process({code!r})"
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (status, stderr)


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("where", ["a full disk", "a closed descriptor"])
def test_output_that_cannot_be_written_is_an_error_with_status_120(where: str, buffered: bool) -> None:
    """Buffered: the text is still in Python's buffer when the command returns (the last flush fails);
    unbuffered (PYTHONUNBUFFERED=1): the command's own write fails."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | ({} if buffered else UNBUFFERED)
    with open(os.devnull if where == "a closed descriptor" else "/dev/full", "wb") as target:
        proc = subprocess.run(
            [sys.executable, "-m", "cnnspec", "validate", "specs/digits.yaml"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL if where == "a closed descriptor" else target,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=env,
            preexec_fn=(lambda: os.close(1)) if where == "a closed descriptor" else None,
        )
    assert proc.returncode == 120, proc.stderr
    assert proc.stderr.startswith("error: the output could not be written: "), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


UNBUFFERED = {"PYTHONUNBUFFERED": "1"}


def test_a_profiler_still_writes_its_figures(tmp_path: Path) -> None:
    figures = tmp_path / "profile.out"
    proc = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(figures), "-m", "cnnspec", "validate", "specs/digits.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert figures.stat().st_size > 0
