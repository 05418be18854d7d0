"""One writer per run directory: the lock on RUN/.cnnspec.lock."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from cnnspec.errors import CheckpointError
from cnnspec.rundir.paths import LOCK_NAME


class RunLock:
    """One writer per run directory: an exclusive `flock` on RUN/.cnnspec.lock while a process writes it.

    The OS releases the lock when the process ends, however it ends (a kill included), so a
    stale lock file never blocks anyone: only a live holder does. The file keeps the holder's
    pid, host, command and start time, for the message the next writer gets. On systems
    without `fcntl` (Windows) runs are not locked.
    """

    def __init__(self, root: Path, command: str):
        self.path = root / LOCK_NAME
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            writable = True
        except OSError:
            if not self.path.is_file():
                raise
            # A read-only folder (or lock file): lock it all the same, so that the write that follows
            # fails naming its own file, and leave the holder record as it is.
            fd, writable = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise CheckpointError(
                f"{self.path.parent} is being written by another cnnspec process ({holder})",
                hint="wait for it to finish, or write this run to another folder (--out)",
            ) from None
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started": started}
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (always False where runs are not locked)."""
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {record['pid']} on {record['host']}, `{record['command']}`, since {record['started']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "its lock file names no holder"


@contextlib.contextmanager
def locked(root: str | Path, command: str | None = None) -> Iterator[RunLock]:
    """Hold the run directory's lock for the block; CheckpointError when another process holds it."""
    lock = RunLock(Path(root), command or " ".join(["cnnspec", *sys.argv[1:2]])).acquire()
    try:
        yield lock
    finally:
        lock.release()
