"""Where `model.weights` points, and the static check that the file is there (no torch)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from cnnspec.errors import Diagnostic
from cnnspec.spec.model import Spec
from cnnspec.spec.paths import resolve_in

MISSING = "nothing"
# Said of a path that is there but is not a regular file: a pipe or a device is never opened (reading a
# FIFO waits for a writer forever; /dev/zero never ends), a folder cannot be read as one file.
NOT_A_FILE_HINT = (
    "only regular files are read (a pipe or device is never opened): name the .pth/.pt/.safetensors file itself"
)
BROKEN_LINK_HINT = "point the link at the weights file, or name the file itself"
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def weights_file(spec: Spec) -> Path | None:
    """The file `model.weights` names, a relative path resolved against the spec file's folder
    (cnnspec.spec.paths: the current folder for a spec that is not a file)."""
    if spec.model.weights is None:
        return None
    return resolve_in(spec, spec.model.weights)


def what_is_at(path: Path) -> str | None:
    """None when `path` is a regular file (through symbolic links); else what is there, for a message:
    MISSING, 'a directory', 'a FIFO (named pipe)', 'a symbolic link to X, which does not exist', …

    Found with stat alone: nothing at the path is opened.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        return MISSING
    except OSError as exc:  # a loop of links, a folder on the way that is not one, no permission
        if exc.errno == errno.ELOOP:
            return "a symbolic link that loops"
        return f"a path that cannot be looked at ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def check_weights(spec: Spec) -> list[Diagnostic]:
    """A located error when `model.weights` names no file, or one of a kind build cannot read (its
    suffix is the spec's own rule, ModelSpec's validator).

    Only `validate` runs this: a run directory's spec.yaml keeps the path as written, and the
    commands that rebuild a run load its checkpoint instead (`build(..., pretrained=False)`).
    """
    path = weights_file(spec)
    if path is None:
        return []
    where = spec.source.locate(("model", "weights"))
    what = what_is_at(path)
    if what == MISSING:
        return [
            Diagnostic(
                f"model.weights: no file at {path}",
                where,
                hint="a relative path is relative to the spec file's folder",
            )
        ]
    if what is not None:
        return [Diagnostic(f"model.weights: {path} is {what}, not a weights file", where, hint=not_a_file_hint(what))]
    return []


def not_a_file_hint(what: str) -> str:
    """The hint for a `model.weights` path that `what_is_at` says is not a regular file."""
    return BROKEN_LINK_HINT if what.startswith("a symbolic link") else NOT_A_FILE_HINT
