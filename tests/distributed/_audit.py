"""An audit hook for torchrun workers (installed as `sitecustomize`): which files each rank writes.

Every Python process that starts with this file's folder on PYTHONPATH imports it. In a process
with torchrun's RANK set, it records each write-like file operation (open for writing, rename,
mkdir, remove, chmod, …) under CNNSPEC_AUDIT_ROOT, and at exit prints them to stdout as
`CNNSPEC_AUDIT <rank> <event> <path>` lines, then `CNNSPEC_AUDIT <rank> done -`.
These are Python's own audit events (sys.addaudithook): nothing in the process is replaced.
"""

from __future__ import annotations

import atexit
import os
import sys

_ROOT = os.environ.get("CNNSPEC_AUDIT_ROOT")
_RANK = os.environ.get("RANK")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {
    "os.rename": 2,  # also os.replace; (src, dst, ...)
    "os.remove": 1,  # also os.unlink
    "os.rmdir": 1,
    "os.mkdir": 1,
    "shutil.rmtree": 1,
    "os.truncate": 1,
    "os.link": 2,
    "os.symlink": 2,
    "os.chmod": 1,
    "os.utime": 1,
}


def _install(root: str, rank: str) -> None:
    roots = {os.path.abspath(root), os.path.realpath(root)}
    seen: list[tuple[str, str]] = []

    def inside(path: object) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        try:
            full = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return full if any(full == r or full.startswith(r + os.sep) for r in roots) else None

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open":
            path, mode, flags = (*args, None, None, None)[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writes and (full := inside(path)):
                seen.append((event, full))
        elif event in _PATH_EVENTS:
            for path in args[: _PATH_EVENTS[event]]:
                if full := inside(path):
                    seen.append((event, full))

    def report() -> None:
        lines = [f"CNNSPEC_AUDIT {rank} {event} {path}\n" for event, path in seen]
        lines.append(f"CNNSPEC_AUDIT {rank} done -\n")
        for line in lines:
            os.write(1, line.encode())  # os.write: no audit event of its own, one write per line

    sys.addaudithook(hook)
    atexit.register(report)


if _ROOT and _RANK is not None:
    _install(_ROOT, _RANK)
