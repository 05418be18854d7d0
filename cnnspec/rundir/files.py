"""Writing a run's files: only cnnspec's own, atomically, and a failed write is a CheckpointError.

The rule for everything cnnspec writes inside a run directory (its files, `checkpoints/`,
`samples/`, the lock): every name on the way from the run folder to the file is absent, a real
folder, or at the end a regular file. A symbolic link or a special file there (a FIFO, a socket,
a device, a folder where a file belongs) is refused before anything is written, naming it:

    error: RUN/spec.yaml is a symbolic link to ../my-spec.yaml; cnnspec writes only its own files inside a run

A link would make cnnspec write outside the run, over whatever it points to: the user's source
spec, another model's weights through a linked `checkpoints/`. The run folder itself may be a
link (the user chose that path), and paths the user names outside a run (`export --out`,
`fmt`) follow links to their target as cnnspec.atomic says. Every write of a run file goes
through `write_run_file` (or `make_run_folder`), which checks its path at the moment of the
write; a command checks all the names it will write first (`ensure_own_files`), so a refusal
leaves the run as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from cnnspec.atomic import atomic_path, describe_mode
from cnnspec.errors import CheckpointError
from cnnspec.terminal import printable


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a failed write of `path` (a full disk, a read-only or foreign folder) into a CheckpointError.

    Every file of a run is written atomically, so what was there before is unchanged.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:  # a file where a folder of the path should be
            blocker = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
            raise CheckpointError(
                f"cannot write {printable(str(path))}: "
                + (f"{printable(str(blocker))} is a file, not a folder" if blocker else (exc.strerror or str(exc))),
                hint="name a run folder whose parents are folders (or do not exist yet)",
            ) from None
        resumable = _resumable_run(Path(path))
        raise CheckpointError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint=f"free disk space or make {Path(path).parent} writable; files are replaced whole, so the ones "
            "already there are intact"
            + (f" (the run continues with `cnnspec train --resume {resumable}`)" if resumable else ""),
        ) from None


def _resumable_run(path: Path) -> Path | None:
    """The run folder `path` is in, when it has a training state to resume from (a run that failed in its
    first epoch has none: `--resume` would refuse it)."""
    for folder in list(path.parents)[:2]:  # RUN/FILE or RUN/checkpoints/FILE
        if (folder / "checkpoints" / "last.state.pt").is_file():
            return folder
    return None


def not_own_file(path: Path, mode: int, *, folder: bool = False) -> CheckpointError:
    """The refusal of `path` inside a run: a symbolic link or a special file where cnnspec writes its own."""
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "somewhere"
        what = f"a symbolic link to {printable(target)}"
    else:
        what = f"{describe_mode(mode)}, not {'a folder' if folder else 'a regular file'}"
    return CheckpointError(
        f"{printable(path)} is {what}; cnnspec writes only its own files inside a run",
        hint="nothing was written; move it out of the run (a link's target is not touched) and run the command "
        "again: cnnspec then writes its own file there",
    )


def own_path(run: Path, path: Path, *, folder: bool = False) -> None:
    """CheckpointError unless every name of `path` below the run folder `run` is absent, a real folder, or
    (the last one) a regular file, or a real folder when `folder`. `path` is `run / ...`."""
    current = run
    parts = path.relative_to(run).parts
    for i, part in enumerate(parts):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return  # this and everything below it is cnnspec's to make (a file on the way: the write says so)
        last = i == len(parts) - 1
        wanted = stat.S_ISDIR if folder or not last else stat.S_ISREG
        if not wanted(mode):
            raise not_own_file(current, mode, folder=folder or not last)


def ensure_own_files(run: Path, paths: Iterable[Path]) -> None:
    """`own_path` for every name a command will write in the run, before it writes any; the layout's
    folders (`RUN/checkpoints`, `RUN/samples`) are checked as folders."""
    for path in paths:
        with writing(path):  # a folder that cannot be read, say
            own_path(run, path, folder=path.name in ("checkpoints", "samples") and path.parent == run)


def write_run_file(run: Path, path: Path, data: bytes | str | Callable[[Path], None]) -> None:
    """Write the run's file `path` atomically after checking it is the run's own (the rule above);
    `data` is the bytes, the text (UTF-8), or a function that writes a temporary path.

    A failed write (a full disk, a read-only folder) is a CheckpointError naming the file.
    """
    with writing(path):
        own_path(run, path)
        with atomic_path(path) as tmp:
            if isinstance(data, bytes):
                tmp.write_bytes(data)
            elif isinstance(data, str):
                tmp.write_bytes(data.encode("utf-8"))
            else:
                data(tmp)


def make_run_folder(run: Path, folder: Path) -> None:
    """Make the run's folder `folder` (and the run folder) unless it is there, checked like a file."""
    with writing(folder):
        own_path(run, folder, folder=True)
        folder.mkdir(parents=True, exist_ok=True)


def write_file(path: str | Path, data: bytes, *, run: Path | None = None) -> None:
    """Write a checkpoint atomically; a full disk or a read-only folder is a CheckpointError.

    Serialising to bytes first keeps write failures plain OSErrors (torch.save on a full
    disk says only "unexpected pos 576 vs 534"); the old file stays until the new one is complete.
    With `run` (the run folder it belongs to) the file is checked as the run's own first.
    """
    if run is not None:
        write_run_file(run, Path(path), data)
        return
    with writing(path), atomic_path(path) as tmp:
        tmp.write_bytes(data)
