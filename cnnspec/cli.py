"""The console entry point: `cnnspec` (pyproject's console script) and `python -m cnnspec`.

It imports nothing heavy before it starts catching Ctrl-C: typer, rich and the commands load
inside `main`, so an interrupt at any moment of start-up ends with `interrupted` and exit
130 (cnnspec.interrupts), never a KeyboardInterrupt traceback. The commands
themselves are in cnnspec/commands/ (app.py lists them).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

from cnnspec.interrupts import EXIT_INTERRUPTED, catch_ctrl_c, ctrl_c, interrupts_exit


def main() -> None:
    """The console script."""
    try:
        run()
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            end_interrupted()
        raise


def end_interrupted() -> NoReturn:
    """Exit 130 now, without the interpreter's shut-down: Python's own clean-ups (atexit) run, then the
    process ends. A Ctrl-C that lands while a native library (onnxruntime, gloo) starts its threads can
    leave one that C++ destroys joinable at shut-down, and `terminate called without an active
    exception` then aborts the process (exit -6) after it said `interrupted`."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_INTERRUPTED)


def run() -> None:
    catch_ctrl_c()
    with interrupts_exit():
        try:
            from cnnspec.background import quiet_background_errors

            quiet_background_errors()
            # The first validator pydantic builds makes it read every installed package's metadata,
            # looking for plugins (observability hooks): ~20 ms of a `validate` run, for nothing here.
            os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
            # OpenMP threads that wait for work sleep instead of spinning (read once, when torch loads its
            # OpenMP runtime, so before any import of torch). On cores shared with other processes, torch's
            # spinning intra-op threads wait on each other: the digits spec trained 13× faster with it under
            # a load of 6.7 on 2 cores (docs/benchmarks.md, "CPU defaults"). OMP_WAIT_POLICY=ACTIVE restores it.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            from cnnspec.commands.app import app

            app()
        finally:
            ctrl_c.finish()
