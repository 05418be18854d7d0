"""`cnnspec diff` with git revisions that look like options (issue 14, item 11).

`REV:path` is read with `git show`; a REV such as `--output=FILE` made git write FILE. Run
with the installed `cnnspec` script in a real repository, the way a CI job would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.review.review_helpers import SPECS, cli_env, git, git_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = git_repo(tmp_path / "repo")
    (repo / "spec.yaml").write_text((SPECS / "small_cnn.yaml").read_text())
    git("add", "spec.yaml", cwd=repo)
    git("commit", "-q", "-m", "spec", cwd=repo)
    return repo


@pytest.mark.parametrize(
    "rev",
    ["--output=FILE", "--output=../outside", "-oFILE", "--ext-diff", "-"],
)
def test_a_revision_that_starts_with_a_dash_is_refused_and_git_writes_nothing(repo: Path, rev: str) -> None:
    before = sorted(p.name for p in repo.parent.rglob("*") if ".git" not in p.parts)
    proc = subprocess.run(
        ["cnnspec", "diff", "--", f"{rev}:spec.yaml", "spec.yaml"],
        cwd=repo,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sorted(p.name for p in repo.parent.rglob("*") if ".git" not in p.parts) == before
    assert proc.returncode == 2, proc.stdout + proc.stderr  # diff(1)'s "trouble" status
    assert f"refused revision {rev!r}: a git revision cannot start with '-'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_plain_revision_still_reads_from_git(repo: Path) -> None:
    proc = subprocess.run(
        ["cnnspec", "diff", "HEAD:spec.yaml", "spec.yaml"],
        cwd=repo,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAD:spec.yaml → spec.yaml" in proc.stdout


def test_git_supports_end_of_options() -> None:
    # cnnspec passes --end-of-options to git show (git 2.24 and later).
    version = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout
    major, minor = (int(v) for v in version.split()[2].split(".")[:2])
    assert (major, minor) >= (2, 24), version
