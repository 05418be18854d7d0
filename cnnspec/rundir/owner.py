"""Which cnnspec run a path outside the run's own writers would overwrite.

Every command that writes a file the user names (`export --out`, `quantize -o`, `diff -o`,
`graph -o`, `schema --out`) asks `owning_run` first: a file a run owns (its spec, record, metrics,
lock, checkpoints, samples, exported model, evaluation) is written only by the command that owns
it, so a mistyped `-o` can never replace a run's weights or its lock (two trains on one run).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from cnnspec.rundir.info import is_run
from cnnspec.rundir.paths import CHECKPOINT_FILES, LOCK_NAME, RUN_FILES

_FOLDERS = ("checkpoints", "samples")


def owning_run(path: str | Path, allowed: Collection[str] = ()) -> tuple[Path, str] | None:
    """(run folder, the file's name in it) when writing `path` (symlinks followed) would replace a
    file of a cnnspec run (a folder whose run.json is cnnspec's own) other than the names in
    `allowed` (relative to the run: `model.onnx` for export); None otherwise."""
    real = Path(os.path.realpath(path))
    for root in (real.parent, real.parent.parent):
        if not real.is_relative_to(root) or not is_run(root):
            continue
        name = real.relative_to(root).as_posix()
        if name in allowed:
            return None
        first = name.split("/", 1)[0]
        if name in RUN_FILES or name == LOCK_NAME or first in _FOLDERS or name in CHECKPOINT_FILES:
            return root, name
    return None


def hard_link_into(run: Path, path: str | Path) -> str | None:
    """The name of the file of `run` that `path` is a second name of (a hard link), if any."""
    if not os.path.isfile(path):
        return None
    names = [*RUN_FILES, LOCK_NAME, *(f"checkpoints/{n}" for n in CHECKPOINT_FILES)]
    for name in names:
        own = run / name
        if os.path.isfile(own) and os.path.samefile(own, path):
            return name
    return None


def enclosing_run(path: str | Path, run: str | Path) -> Path | None:
    """The cnnspec run folder other than `run` that `path` (symlinks followed) would be written inside, at
    any depth, if any: a folder on the way up whose run.json is cnnspec's own. The walk stops at `run`
    itself (a name inside the run being exported is its own business, wherever `run` lives)."""
    real, own = Path(os.path.realpath(path)), Path(os.path.realpath(run))
    for folder in real.parents:
        if folder == own:
            return None
        if is_run(folder):
            return folder
    return None
