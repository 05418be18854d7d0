"""Paths the operating system refuses for their length: a name over NAME_MAX bytes, a path over PATH_MAX;
and paths that are not UTF-8, which cnnspec cannot record.

The kernel answers such a path with ENAMETOOLONG ("File name too long") whether it is read or
written; cnnspec checks the paths a user gives before a command starts (the command line checks
every path argument and option, cnnspec/commands/app.py) and the paths it derives (a run's files,
the sample images' names) before anything is written, so the answer is one line naming the path,
never a traceback or a "cannot write" for a file that was being read.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnnspec.errors import CnnspecError
from cnnspec.terminal import printable

NAME_MAX = 255  # bytes in one name (a folder or file name): Linux, macOS and most file systems
PATH_MAX = 4096  # bytes in a path the kernel takes, with its closing NUL (Linux)
_SHOWN = 60  # characters of a long path shown at each end


def too_long(path: str | Path) -> str | None:
    """Why the OS would refuse `path` for its length ('file name too long (300 bytes, the limit is 255)'),
    or None when it fits."""
    raw = os.fsencode(path)
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if longest > NAME_MAX:
        return f"file name too long ({longest} bytes in one name, the limit is {NAME_MAX})"
    if len(raw) >= PATH_MAX:
        return f"path too long ({len(raw):,} bytes, the limit is {PATH_MAX - 1:,})"
    return None


def shown_path(path: str | Path) -> str:
    """`path` for a message: escaped for a terminal, its middle left out when it is long."""
    text = printable(path)
    if len(text) <= 2 * _SHOWN + 20:
        return text
    return f"{text[:_SHOWN]}…{text[-_SHOWN:]}"


def too_long_error(path: str | Path, reason: str | None = None) -> CnnspecError:
    """The error for a path the OS refuses for its length (`reason`: from `too_long`, or worked out here)."""
    why = reason or too_long(path) or "file name too long"
    return CnnspecError(
        f"{shown_path(path)}: {why}",
        hint="use a shorter name or path (a name may have at most 255 bytes; a path at most 4,095)",
    )


def ensure_fits(path: str | Path) -> None:
    """CnnspecError unless the OS can take `path` for its length."""
    reason = too_long(path)
    if reason is not None:
        raise too_long_error(path, reason)


def is_utf8(path: str | Path) -> bool:
    """Whether `path`'s bytes are UTF-8 text. A name that is not (Latin-1 bytes, `$'\\xff'`) reaches Python
    with lone surrogates in it: run.json, a model's metadata and safetensors' path argument cannot take
    it, so a run trained there could not be read back, and onnxruntime refuses such a model path."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def not_utf8_error(path: str | Path) -> CnnspecError:
    shown = printable(os.fsencode(path).decode("utf-8", "backslashreplace"))
    return CnnspecError(
        f"{shown}: the path is not valid UTF-8; cnnspec records paths as UTF-8 text (run.json, a model's metadata)",
        hint="rename the file or folder (or one above it) to a UTF-8 name",
    )
