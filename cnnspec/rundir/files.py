"""Writing a run's files: atomically, and a failed write (a full disk, a read-only folder) is a CheckpointError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from cnnspec.atomic import atomic_write_bytes
from cnnspec.errors import CheckpointError


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a failed write of `path` (a full disk, a read-only or foreign folder) into a CheckpointError.

    Every file of a run is written atomically, so what was there before is unchanged.
    """
    try:
        yield
    except OSError as exc:
        raise CheckpointError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint=f"free disk space or make {Path(path).parent} writable; files are replaced whole, so the ones "
            "already there are intact (a stopped run continues with `cnnspec train --resume RUN`)",
        ) from None


def write_file(path: str | Path, data: bytes) -> None:
    """Write a checkpoint atomically; a full disk or a read-only folder is a CheckpointError.

    Serialising to bytes first keeps write failures plain OSErrors (torch.save on a full
    disk says only "unexpected pos 576 vs 534"); the old file stays until the new one is complete.
    """
    with writing(path):
        atomic_write_bytes(path, data)
