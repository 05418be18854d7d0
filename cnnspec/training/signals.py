"""Ctrl-C (SIGINT) and SIGTERM during training: finish the current step, save, then stop.

The first signal only sets a flag that the loop checks between optimizer steps, so the
saved state is always a consistent one; a second signal aborts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from cnnspec.interrupts import ctrl_c


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C/SIGTERM after saving; `run` is the run directory to resume."""

    def __init__(self, run: Path):
        super().__init__(f"training interrupted; resume with: cnnspec train --resume {run}")
        self.run = run


class StopFlag:
    """Set by a signal; read by the training loop between steps."""

    def __init__(self) -> None:
        self.requested = False
        self.on_request: Callable[[], None] | None = None

    def request(self) -> None:
        self.requested = True
        if self.on_request is not None:
            self.on_request()


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT/SIGTERM to `flag` while the block runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    ctrl_c.deliver_held()  # a Ctrl-C the command line held during an import: stop before training starts
    previous: dict[signal.Signals, object] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.requested:  # second signal: stop now, without saving
            for sig, old in previous.items():
                signal.signal(sig, old)  # type: ignore[arg-type]
            raise KeyboardInterrupt
        flag.request()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
