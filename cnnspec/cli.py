"""The console entry point: `cnnspec` (pyproject's console script) and `python -m cnnspec`.

It imports nothing heavy before it starts catching Ctrl-C: typer, rich and the commands load
inside `main`, so an interrupt at any moment of start-up ends with `interrupted` and exit
130 (cnnspec.interrupts), never a KeyboardInterrupt traceback. When the command is over, the
process ends without the interpreter's tear-down (`end_process`). The commands themselves are in
cnnspec/commands/ (app.py lists them); `run` is all of it but the ending, for a caller that goes on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

from cnnspec.interrupts import EXIT_INTERRUPTED, catch_ctrl_c, ctrl_c, interrupts_exit


def main() -> NoReturn:
    """The console script: run the command, then end the process with its exit status at once."""
    try:
        run(own_process=True)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if sys.gettrace() is not None or sys.getprofile() is not None:
        raise SystemExit(code)  # a profiler or coverage writes its figures at the interpreter's exit
    if code == EXIT_INTERRUPTED:
        end_interrupted()
    end_process(code)


def end_process(code: object) -> NoReturn:
    """Exit with `code` (a SystemExit's) without the interpreter's tear-down of every module and object.

    What Python's shut-down does that a command relies on still happens, in its order: non-daemon
    threads are waited for, atexit callbacks run (multiprocessing's, tempfile's, logging's, mlflow's),
    stdout and stderr are flushed. What is skipped is freeing everything one object at a time: 0.6 s
    after `import torch`, 1.1 s once torch.optim has imported torch._dynamo (2-core development
    machine, docs/benchmarks.md), the last second of every `cnnspec train`. Every file cnnspec writes is
    closed (and renamed into place) before its command returns, so nothing waits for a finaliser.
    """
    import atexit
    import threading

    # What Python's own shut-down runs first: the callbacks that tell idle thread pools' workers to end
    # (concurrent.futures, asyncio's default executor), then a wait for every non-daemon thread.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code  # the system keeps its low 8 bits, as for exit()
    else:  # sys.exit("message"): the message on stderr, status 1
        with contextlib.suppress(Exception):
            sys.stderr.write(f"{code}\n")
        status = 1
    _flush_and_exit(status)


def end_interrupted() -> NoReturn:
    """Exit 130 now: atexit callbacks run, threads are not waited for (a Ctrl-C asked to stop), and the
    interpreter's shut-down is skipped. A Ctrl-C that lands while a native library (onnxruntime, gloo)
    starts its threads can leave one that C++ destroys joinable at shut-down, and `terminate called
    without an active exception` would then abort the process (exit -6) after it said `interrupted`."""
    import atexit

    atexit._run_exitfuncs()
    _flush_and_exit(EXIT_INTERRUPTED)


def _flush_and_exit(status: int) -> NoReturn:
    """Flush stdout and stderr, then end the process. Output that cannot be written (a full disk) is an
    error, as at Python's own exit (status 120), said on stderr unless the command already failed."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError) as exc:  # ValueError: stdout was closed
        if status == 0:
            from cnnspec.commands.common import EXIT_OUTPUT_LOST, say_output_lost

            say_output_lost(exc)
            status = EXIT_OUTPUT_LOST
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(status)


def run(*, own_process: bool = False) -> None:
    """The command the arguments name. `own_process`: the process is the command's alone (`main`), so
    `train` may tune it for the CPU (cnnspec/cpu_tuning.py)."""
    catch_ctrl_c()
    with interrupts_exit():
        try:
            from cnnspec.background import quiet_background_errors

            quiet_background_errors()
            # The first validator pydantic builds makes it read every installed package's metadata,
            # looking for plugins (observability hooks): ~20 ms of a `validate` run, for nothing here.
            os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
            # OpenMP threads that wait for work sleep instead of spinning, unless `train` finds the cores
            # free (cnnspec/cpu_tuning.py): read once, when torch loads, so before any import of torch.
            from cnnspec import cpu_tuning

            cpu_tuning.prepare(own_process)
            from cnnspec.commands.app import app

            app()
        finally:
            ctrl_c.finish()
