"""Read a spec from a file or from git (`REV:path`, as `git show` takes it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cnnspec.errors import Diagnostic, Location, SpecError
from cnnspec.spec.model import Spec


def is_git_ref(arg: str) -> bool:
    """`REV:path` names a file in git; an existing file path wins over that reading."""
    return ":" in arg and not os.path.exists(arg)  # os.path: False for a name too long to exist, never raises


def read_text(arg: str, cwd: str | Path | None = None) -> str:
    """The text of a spec file, or of `REV:path` read with `git show` (path from the repository root)."""
    from cnnspec.spec.source import MAX_FILE_BYTES, read_spec_text

    if not is_git_ref(arg):
        return read_spec_text(Path(cwd or ".") / arg if cwd else arg)
    rev, _, path = arg.partition(":")
    if rev.startswith("-"):  # git would read `--output=FILE:x` as an option and write FILE
        raise SpecError(
            Diagnostic(
                f"refused revision {rev!r}: a git revision cannot start with '-'",
                Location(arg),
                hint="write REV:PATH with a branch, tag or commit as REV: HEAD~1:specs/x.yaml",
            )
        )
    # --end-of-options (git ≥ 2.24): whatever the argument holds, git takes it as a revision, never an option.
    command = ["git", "show", "--end-of-options", f"{rev}:{path}"]
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise SpecError(Diagnostic(f"cannot read {arg}: git is not installed", Location(arg))) from None
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SpecError(
            Diagnostic(
                f"cannot read {arg} from git",
                Location(arg),
                notes=tuple(reason[:3]),
                hint="write REV:PATH with PATH from the repository root (or ./PATH from here): HEAD~1:specs/x.yaml",
            )
        )
    if len(proc.stdout) > MAX_FILE_BYTES:
        raise SpecError(Diagnostic(f"{arg} is larger than {MAX_FILE_BYTES // 2**20} MiB", Location(arg)))
    try:
        return proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(Diagnostic("the file is not UTF-8 text", Location(arg, 1, 1))) from None


def load_spec(arg: str, cwd: str | Path | None = None) -> Spec:
    """Load and validate a spec named by a path or `REV:path`; messages name it as given."""
    from cnnspec.spec.load import loads

    return loads(read_text(arg, cwd), arg)
