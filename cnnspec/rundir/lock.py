"""One writer per run directory, and no reader while it writes: the lock on RUN/.cnnspec.lock."""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from cnnspec.errors import CheckpointError
from cnnspec.rundir.files import not_own_file, own_path, writing
from cnnspec.rundir.paths import LOCK_NAME
from cnnspec.terminal import printable

# The lock file is opened without following a link (one at its name is refused, never written
# through), without blocking (a FIFO there would block open() forever) and not inherited by
# the processes cnnspec starts (DataLoader workers, torchrun).
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class RunLock:
    """An `flock` on RUN/.cnnspec.lock: exclusive while a process writes the run (train, evaluate,
    an export into the run), shared while one only reads its weights (an export elsewhere, bench).

    A writer is refused while anyone else holds the lock, a reader while a writer holds it, so a
    command never reads weights a training run is still changing, and two writers never mix a run.
    The OS releases the lock when the process ends, however it ends (a kill included), so a stale
    lock file never blocks anyone: only a live holder does. A writer records its pid, host, command
    and start time in the file, for the message the next process gets. A reader of a run whose
    folder it cannot write and that has no lock file reads unlocked (nobody can write there either).
    On systems without `fcntl` (Windows) runs are not locked.
    """

    def __init__(self, root: Path, command: str, *, shared: bool = False):
        self.root = root
        self.path = root / LOCK_NAME
        self.command = command
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        with writing(self.path):  # a read-only folder without a lock file, say
            own_path(self.root, self.path)  # a link or a special file at the lock's name: refused, named
            if not self.shared:
                self.root.mkdir(parents=True, exist_ok=True)
            opened = self._open()
        if opened is None:
            return self
        fd, writable = opened
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError:
            message = self._refusal(fd, fcntl)
            os.close(fd)
            raise CheckpointError(
                message,
                hint="wait for it to finish, or write this run to another folder (--out)"
                if not self.shared
                else "wait for it to finish: until then what it writes (weights, evaluation.json) is still changing",
            ) from None
        if writable and not self.shared:
            started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started": started}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> tuple[int, bool] | None:
        """The lock file's descriptor and whether it is writable; None for an unlocked reader."""
        try:
            fd, writable = os.open(self.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o644), True
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link put there since own_path looked
                raise not_own_file(self.path, os.lstat(self.path).st_mode) from None
            try:
                mode = os.lstat(self.path).st_mode
            except FileNotFoundError:
                if self.shared:  # cannot be made (a read-only folder): no writer can work here either
                    return None
                raise exc from None
            if not stat.S_ISREG(mode):
                raise not_own_file(self.path, mode) from None
            # A read-only folder (or lock file): lock it all the same, so that the write that follows
            # fails naming its own file, and leave the holder record as it is.
            fd, writable = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS), False
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a FIFO, a socket or a device opened without blocking
            os.close(fd)
            raise not_own_file(self.path, info.st_mode)
        if info.st_nlink > 1:  # a hard link: the holder record would be written into the other file too
            os.close(fd)
            raise CheckpointError(
                f"{printable(self.path)} is a hard link to another file ({info.st_nlink} names): not written through",
                hint=f"remove {printable(self.path)} (cnnspec makes a new one)",
            )
        return fd, writable

    def _refusal(self, fd: int, fcntl: object) -> str:
        """Why the lock was refused: a writer holds it (named from its record), or readers do."""
        where = printable(self.root)
        if not self.shared:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # type: ignore[attr-defined]
            except OSError:
                pass
            else:  # shared holders only: readers, whose record is not in the file
                fcntl.flock(fd, fcntl.LOCK_UN)  # type: ignore[attr-defined]
                return f"{where} is being read by another cnnspec process (an export or a benchmark)"
        return f"{where} is being written by another cnnspec process ({_holder(fd)})"

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (always False where runs are not locked)."""
        return self._fd is not None

    @property
    def fd(self) -> int | None:
        """The lock file's descriptor while held: a process given it (`pass_fds`) holds the lock too,
        which the OS then releases when the last holder closes it (`cnnspec sweep`'s workers)."""
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return printable(f"pid {record['pid']} on {record['host']}, `{record['command']}`, since {record['started']}")
    except (ValueError, KeyError, TypeError, OSError):
        return "its lock file names no holder"


@contextlib.contextmanager
def locked(root: str | Path, command: str | None = None, *, shared: bool = False) -> Iterator[RunLock]:
    """Hold the run directory's lock for the block (`shared`: a reader's); CheckpointError when another
    process holds it (a writer, or for a writer also readers)."""
    lock = RunLock(Path(root), command or " ".join(["cnnspec", *sys.argv[1:2]]), shared=shared).acquire()
    try:
        yield lock
    finally:
        lock.release()
