"""Errors in threads and finalisers cnnspec does not own reach the user as one line, not a traceback.

A killed DataLoader worker left its queue's feeder thread printing a BrokenPipeError traceback
after cnnspec's own "a data loading worker process died" (seen once in a full suite run).
Each case runs in a fresh process, as the command line does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPTS = {
    "a thread that raises": """
        import threading
        thread = threading.Thread(target=lambda: 1 / 0, name="worker-watch")
        thread.start()
        thread.join()
    """,
    "a finaliser that raises": """
        class Leaky:
            def __del__(self):
                raise OSError("cannot close")
        Leaky()
    """,
    "a queue feeding a reader that died": """
        import time
        from cnnspec.background import quiet_context
        queue = quiet_context().Queue()
        queue._reader.close()  # the worker at the other end is gone
        queue.put(b"x" * 100)
        time.sleep(0.5)  # the feeder thread writes, and meets the closed pipe
    """,
}


def _run(body: str, quiet: bool) -> subprocess.CompletedProcess[str]:
    setup = "from cnnspec.background import quiet_background_errors; quiet_background_errors()\n" if quiet else ""
    code = setup + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_a_background_error_is_one_line_without_a_traceback(case: str) -> None:
    proc = _run(SCRIPTS[case], quiet=True)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") <= 1, proc.stderr
    if case != "a queue feeding a reader that died":  # a dead reader is the loader's to report: silent
        assert proc.stderr.startswith("warning: "), proc.stderr


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_without_the_hooks_python_prints_a_traceback(case: str) -> None:
    """The cases above are real: Python's own handling prints a traceback for each (the queue's
    case through multiprocessing's plain Queue)."""
    body = SCRIPTS[case].replace("quiet_context().Queue()", "__import__('multiprocessing').Queue()")
    assert "Traceback" in _run(body, quiet=False).stderr


def test_the_command_line_installs_the_hooks() -> None:
    code = (
        "import sys, threading, cnnspec.cli as cli\n"
        "sys.argv = ['cnnspec', '--help']\n"
        "try:\n    cli.run()\nexcept SystemExit:\n    pass\n"
        "from cnnspec import background\n"
        "print(threading.excepthook is background._thread_hook, sys.unraisablehook is background._unraisable_hook)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines()[-1] == "True True", proc.stdout + proc.stderr
