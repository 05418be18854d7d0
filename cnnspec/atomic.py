"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A reader (or a process killed mid-write) sees the old file or the new one, never a
half-written one.

Only regular files are written: a path that names a directory, a device, a FIFO or a
socket is refused with `NotRegularFileError` (an OSError, so callers' "cannot write FILE:
REASON" handling covers it) before anything is created. A symlink is followed: its
final target is written atomically and the link is kept. A file that exists keeps its
permission bits (a 0600 file stays 0600); a new one gets what a plain open() would give.

Test hook: with CNNSPEC_TEST_STOP_BEFORE_RENAME=NAME:N in the environment, the N-th atomic
write (in this process) of a file named NAME stops the process with SIGSTOP once the
temporary file is complete and fsync'd, just before the rename, so a test can kill it at
exactly that point (tests/reliability/test_kill_resume.py). SIGCONT lets the write finish.
The hook writes nothing and names no path: it only pauses writes cnnspec makes anyway.
Unset, it costs one environment lookup per file written. POSIX only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"
STOP_BEFORE_RENAME = "CNNSPEC_TEST_STOP_BEFORE_RENAME"
_TMP_NAME_CHARS = 40  # of the target's name in a temporary file's name (at most 160 bytes in UTF-8)
_writes: Counter[str] = Counter()  # atomic writes per file name, counted only while the hook is set


class NotRegularFileError(OSError):
    """The path to write names something other than a regular file (a directory, device, FIFO, socket)."""


def describe_mode(mode: int) -> str:
    """What a file of this `st_mode` is, in words: 'a directory', 'a FIFO (named pipe)', …"""
    for test, name in (
        (stat.S_ISREG, "a file"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def dangling_link(path: str | Path) -> str | None:
    """What a symbolic link at `path` points to when that does not exist; None for anything else.

    A write through such a link would create the file, and the folders above it, wherever the link
    points: commands that write a file the user named refuse it instead."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except FileNotFoundError:
        return os.readlink(path)
    except OSError:
        return None  # a loop of links: write_target says so
    return None


def write_target(path: str | Path) -> Path:
    """The file a write of `path` changes: `path` itself, or the final target when it is a symlink.

    NotRegularFileError when that exists and is not a regular file.
    """
    target = Path(path)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink loop: realpath stops inside it
            raise NotRegularFileError(exc.errno, "a symlink loop, not a regular file", str(path)) from None
        raise
    if not stat.S_ISREG(mode):
        kind = describe_mode(mode)
        code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
        raise NotRegularFileError(code, f"it is {kind}; only regular files are written", str(path))
    return target


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically.

    `path` may be a symlink: the temporary file lies beside its final target, which it
    replaces (the link stays). An existing file's permission bits are kept.
    """
    target = write_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        # mkstemp makes the file owner-only; give it the mode a plain open() would (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    # The temporary name carries the target's (for a person looking at the folder), cut short so that a
    # target whose name is near the 255-byte limit still has a temporary name the file system takes.
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + target.name[:_TMP_NAME_CHARS] + ".", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, mode)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if STOP_BEFORE_RENAME in os.environ:
            _stop_if_asked(target.name, os.environ[STOP_BEFORE_RENAME])
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def rewrite_text(path: str | Path, text: str) -> None:
    """Replace the text of a file the user named (symlinks followed, as `atomic_path`), keeping its hard links.

    A file with one name is replaced atomically. A file with more than one (hard links) is rewritten in
    place, as editors do, so that every name of it has the new text: a rename would give `path` a new
    file and leave the other names with the old one. The new text is first written in full to a
    temporary file beside it and fsync'd (so the disk has room for it; the temporary is removed before
    the rewrite, which frees that room again); a rewrite that fails half-way puts the old text back.
    """
    data = text.encode("utf-8")
    target = write_target(path)
    try:
        links = target.stat().st_nlink
    except FileNotFoundError:
        links = 1
    if links <= 1:
        atomic_write_bytes(target, data)
        return
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + target.name[:_TMP_NAME_CHARS] + ".", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    finally:
        os.unlink(tmp_name)
    with open(target, "r+b") as f:
        old = f.read()
        try:
            f.seek(0)
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.seek(0)
            f.write(old)
            f.truncate()
            raise


def atomic_write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Let `writer` write a temporary file (e.g. safetensors' save_file), then move it into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _stop_if_asked(name: str, setting: str) -> None:
    """The test hook: SIGSTOP this process at the N-th write of a file named `name` (NAME:N)."""
    want, sep, nth = setting.rpartition(":")
    if not sep or not want or not nth.isdigit() or int(nth) < 1:
        raise ValueError(f"{STOP_BEFORE_RENAME} must be NAME:N (a file name and a count from 1), not {setting!r}")
    if name != want:
        return
    _writes[name] += 1
    if _writes[name] == int(nth):
        os.kill(os.getpid(), signal.SIGSTOP)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete temporary files a killed writer left behind."""
    for p in Path(folder).glob(TMP_PREFIX + "*"):
        p.unlink(missing_ok=True)
