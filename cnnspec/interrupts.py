"""Ctrl-C in cnnspec: what SIGINT raises in the command line, and how a stray one ends it.

Commands that can be interrupted halfway say what was left (`train`: how to resume; `export`:
that no file was written). Every other Ctrl-C (start-up while typer, pydantic or torch are
imported, parsing the arguments, a command without handling of its own) ends with one line,
`interrupted`, and exit 130: never a traceback. This module imports nothing heavy:
`cnnspec.cli.main` uses it before anything else is imported.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command Ctrl-C stopped


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, as the command line's SIGINT handler raises it (every `except KeyboardInterrupt` sees it).

    Why not a plain KeyboardInterrupt: CPython remembers one that ended an `eval` or `exec` of a
    string (typer evaluates the commands' annotations with one, pydantic its models') and then
    ends the process by SIGINT itself, whatever exit status the program chose; it checks the
    exact type, so not this one.
    """


class CtrlC:
    """The command line's SIGINT handler: raises `Interrupted`, not inside an import, and remembers.

    An exception raised inside an import can break the extension being imported: numpy then
    refuses to load twice ("cannot load module more than once per process"), and torch's
    pybind11 initialisers end the process with std::terminate. So a Ctrl-C that lands inside
    an import is held: delivered again (SIGINT, to whoever handles it then) every 50 ms until
    no import is running, or raised by `deliver_held` when train's or export's own handling
    is about to take SIGINT over. And `pressed` stays set: an interrupt that a library still
    turns into another error is then told apart from a bug.
    """

    RETRY_SECONDS = 0.05

    def __init__(self) -> None:
        self.pressed = False
        self.held = False
        self._alarm: Any = None  # SIGALRM's own handler while a held Ctrl-C waits for its retry

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        if _importing(frame) and hasattr(signal, "setitimer"):
            self.held = True
            if self._alarm is None:
                self._alarm = signal.signal(signal.SIGALRM, self._retry)
            signal.setitimer(signal.ITIMER_REAL, self.RETRY_SECONDS)
            return
        self._release()
        raise Interrupted

    def deliver_held(self) -> None:
        """Raise a held Ctrl-C now (before a command installs its own SIGINT handling)."""
        if self.held:
            self._release()
            raise Interrupted

    def finish(self) -> None:
        """The command is over: raise a Ctrl-C still held, then let none reach Python's shut-down.

        A Ctrl-C can land in an import that a short command (validate, fmt) finishes, along with
        all its work, before the 50 ms retry: the user asked it to stop, so it ends interrupted.
        After that, SIGINT and SIGALRM are ignored: Python resets their handlers to the system's
        while it shuts down, and those would end the process by the signal (exit -2 or -14, no
        message) for a key pressed when there was nothing left to stop.
        """
        held = self.held
        self._release()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
        if held:
            raise Interrupted

    def _retry(self, signum: int, frame: FrameType | None) -> None:
        self._release()
        signal.raise_signal(signal.SIGINT)  # held again if it still lands inside an import

    def _release(self) -> None:
        self.held = False
        if self._alarm is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._alarm)
            self._alarm = None


_IMPORT_MACHINERY = frozenset({"importlib._bootstrap", "importlib._bootstrap_external"})


def _importing(frame: FrameType | None) -> bool:
    """Whether `frame` (where a signal handler was called) runs inside an import."""
    while frame is not None:
        if frame.f_globals.get("__name__") in _IMPORT_MACHINERY:
            return True
        frame = frame.f_back
    return False


ctrl_c = CtrlC()


def raises_on_ctrl_c(handler: Callable[[int, FrameType | None], Any] | int | None) -> bool:
    """Whether `handler` (a signal.getsignal result) is Python's or cnnspec's: Ctrl-C raises KeyboardInterrupt."""
    return handler is signal.default_int_handler or handler is ctrl_c


def catch_ctrl_c() -> None:
    """Make SIGINT raise `Interrupted`; a SIGINT that was ignored when Python started stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, ctrl_c)


def exit_interrupted() -> NoReturn:
    """Say `interrupted` on stderr and exit 130."""
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_INTERRUPTED)


@contextmanager
def interrupts_exit(passing: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn a KeyboardInterrupt inside the block, or any error after a Ctrl-C, into `exit_interrupted()`.

    `passing`: exceptions that carry a command's own ending (typer's Exit with the exit status a
    command chose after saying what its interrupt left), re-raised untouched.
    """
    try:
        yield
    except KeyboardInterrupt:
        exit_interrupted()
    except passing:
        raise
    except Exception:
        if ctrl_c.pressed:
            exit_interrupted()
        raise
