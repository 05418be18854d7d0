"""Read a spec from a file or from git (`REV:path`, as `git show` takes it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cnnspec.errors import Diagnostic, Location, SpecError
from cnnspec.spec.model import Spec
from cnnspec.terminal import printable

# What an OLD or NEW argument may be, said by every message about one that cannot be read.
ACCEPTED = (
    "give a spec file, or a file in git as REV:PATH (PATH from the repository root, or ./PATH from here): "
    "HEAD~1:specs/x.yaml, main:./x.yaml"
)


def is_git_ref(arg: str) -> bool:
    """`REV:path` names a file in git; an existing file path wins over that reading."""
    return ":" in arg and not os.path.exists(arg)  # os.path: False for a name too long to exist, never raises


def read_text(arg: str, cwd: str | Path | None = None) -> str:
    """The text of a spec file, or of `REV:path` read with `git show` (path from the repository root)."""
    from cnnspec.spec.source import MAX_FILE_BYTES, read_spec_text

    if not is_git_ref(arg):
        file = Path(cwd or ".") / arg if cwd else Path(arg)
        if not os.path.lexists(file):  # say what is accepted: a bare revision (`HEAD`) lands here
            raise SpecError(Diagnostic(f"no such file: {arg}", Location(arg), hint=ACCEPTED))
        return read_spec_text(file)
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
    # What it names is asked first: `git show` of a folder (`HEAD:specs`) or a commit prints a listing or a log.
    kind = _git(["cat-file", "-t", "--end-of-options", f"{rev}:{path}"], arg, cwd)
    if kind.returncode == 0 and kind.stdout.strip() != b"blob":
        what = {b"tree": "a folder", b"commit": "a commit (a submodule)"}.get(kind.stdout.strip(), "not a file")
        raise SpecError(
            Diagnostic(
                f"cannot read {printable(arg)} from git: it is {what}, not a spec file",
                Location(arg),
                hint=ACCEPTED,
            )
        )
    proc = kind if kind.returncode != 0 else _git(["show", "--end-of-options", f"{rev}:{path}"], arg, cwd)
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SpecError(
            Diagnostic(
                f"cannot read {arg} from git",
                Location(arg),
                notes=tuple(reason[:3]),
                hint=ACCEPTED,
            )
        )
    if len(proc.stdout) > MAX_FILE_BYTES:
        raise SpecError(Diagnostic(f"{arg} is larger than {MAX_FILE_BYTES // 2**20} MiB", Location(arg)))
    try:
        return proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(Diagnostic("the file is not UTF-8 text", Location(arg, 1, 1))) from None


def working_file(arg: str, cwd: str | Path | None = None) -> Path | None:
    """The working-tree file that a `REV:PATH` argument names the committed version of (PATH from the
    repository root, or ./PATH from `cwd`, as git reads it); None for a plain file, or outside a repository.
    An -o that names it would overwrite the user's working copy of a spec being diffed."""
    if not is_git_ref(arg):
        return None
    path = arg.partition(":")[2]
    if path.startswith(("./", "../")):
        return Path(cwd or ".") / path
    top = _git(["rev-parse", "--show-toplevel"], arg, cwd)
    if top.returncode != 0 or not path:
        return None
    return Path(top.stdout.decode("utf-8", "replace").strip()) / path


def _git(args: list[str], arg: str, cwd: str | Path | None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise SpecError(Diagnostic(f"cannot read {arg}: git is not installed", Location(arg))) from None


def load_spec(arg: str, cwd: str | Path | None = None) -> Spec:
    """Load and validate a spec named by a path or `REV:path`; messages name it as given."""
    from cnnspec.spec.load import loads

    return loads(read_text(arg, cwd), arg)
