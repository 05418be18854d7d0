"""Errors in threads and finalisers cnnspec does not own, as one line each instead of a traceback.

A DataLoader whose worker was killed leaves its queue's feeder thread writing into a dead pipe,
and finalisers run at exit may raise: Python prints those as tracebacks (`threading.excepthook`,
`sys.unraisablehook`, and `multiprocessing`'s feeder calls `traceback.print_exc()` itself), after
cnnspec has already said what went wrong in its own words. The command line installs these
hooks; a library user keeps Python's.
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any

from cnnspec.terminal import printable


def _say(what: str, exc: BaseException | None) -> None:
    detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    sys.stderr.write(f"warning: {printable(what + detail)}\n")


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    name = args.thread.name if args.thread is not None else "a thread"
    _say(f"background thread {name} stopped", args.exc_value)


def _unraisable_hook(unraisable: Any) -> None:
    _say("ignored an error during clean-up", unraisable.exc_value)


def quiet_background_errors() -> None:
    """Install the hooks (the console entry point calls this once)."""
    threading.excepthook = _thread_hook
    sys.unraisablehook = _unraisable_hook


@functools.cache
def quiet_context() -> Any:
    """The default multiprocessing context, with queues whose feeder thread does not print a
    traceback when the process at the other end has died (DataLoader's `multiprocessing_context`).
    Made on first use: multiprocessing costs every command ~15 ms to import, and only training needs it."""
    import multiprocessing
    import multiprocessing.queues

    class QuietQueue(multiprocessing.queues.Queue):  # type: ignore[type-arg]
        @staticmethod
        def _on_queue_feeder_error(e: BaseException, obj: object) -> None:
            # The reader of this queue is a worker that died: the loader notices and reports it.
            if not isinstance(e, BrokenPipeError | ConnectionResetError):
                _say("a queue's feeder thread failed", e)

    default: Any = type(multiprocessing.get_context())  # fork on Linux, spawn on macOS

    class QuietContext(default):  # type: ignore[misc]
        def Queue(self, maxsize: int = 0) -> QuietQueue:
            return QuietQueue(maxsize, ctx=self.get_context())

    return QuietContext()
