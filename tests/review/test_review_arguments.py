"""What `graph -o` and `diff OLD NEW -o` accept, and what they say about the rest: `-o -` is stdout; a
symbolic link to nothing is refused (following it would create the file, and its folders, wherever it
points); a git revision that names a folder, or a bare revision, is refused with what is accepted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.review.review_helpers import SPECS, cnnspec, git, git_repo

ACCEPTED = "give a spec file, or a file in git as REV:PATH"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = git_repo(tmp_path / "repo")
    (repo / "specs").mkdir()
    (repo / "specs" / "a.yaml").write_text((SPECS / "small_cnn.yaml").read_text())
    git("add", "specs", cwd=repo)
    git("commit", "-q", "-m", "spec", cwd=repo)
    return repo


def test_graph_dash_o_dash_writes_the_svg_to_stdout_and_no_file(repo: Path) -> None:
    result = cnnspec("graph", "specs/a.yaml", "-o", "-", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')
    assert not (repo / "-").exists()


def test_a_file_named_dash_is_written_when_given_with_its_folder(repo: Path) -> None:
    result = cnnspec("graph", "specs/a.yaml", "-o", str(repo / "-"), cwd=repo)
    assert result.returncode == 1  # no extension: refused, but as a file (not read as stdout)
    assert "cnnspec graph cannot write a file without an extension" in result.stderr
    result = cnnspec("diff", "HEAD:specs/a.yaml", "specs/a.yaml", "-o", str(repo / "-"), cwd=repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "same architecture" in (repo / "-").read_text()


@pytest.mark.parametrize("fmt", ["text", "markdown", "json", "html"])
def test_diff_dash_o_dash_writes_the_report_to_stdout_and_no_file(repo: Path, fmt: str) -> None:
    result = cnnspec("diff", "HEAD:specs/a.yaml", "specs/a.yaml", "-f", fmt, "-o", "-", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and not (repo / "-").exists()
    assert result.stderr == ""  # no "wrote -"


@pytest.mark.parametrize("command", ["graph", "diff"])
def test_a_symbolic_link_to_nothing_is_refused_and_nothing_is_created_where_it_points(
    repo: Path, tmp_path: Path, command: str
) -> None:
    nowhere = tmp_path / "elsewhere" / "deeper" / "report.html"
    link = repo / "report.html"
    link.symlink_to(nowhere)
    args = (
        ["graph", "specs/a.yaml"] if command == "graph" else ["diff", "HEAD:specs/a.yaml", "specs/a.yaml", "-f", "html"]
    )
    result = cnnspec(*args, "-o", "report.html", cwd=repo)
    assert result.returncode == (1 if command == "graph" else 2)
    assert result.stderr.splitlines()[0] == (
        f"report.html: error: cannot write report.html: it is a symbolic link to {nowhere}, which does not exist"
    )
    assert not (tmp_path / "elsewhere").exists()
    assert link.is_symlink() and os.readlink(link) == str(nowhere)


def test_a_symbolic_link_to_an_existing_file_is_followed_and_kept(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "drawing.svg"
    target.write_text("old")
    link = repo / "drawing.svg"
    link.symlink_to(target)
    result = cnnspec("graph", "specs/a.yaml", "-o", "drawing.svg", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert target.read_text().startswith("<?xml") and link.is_symlink()


@pytest.mark.parametrize("rev", ["HEAD:specs", "HEAD:"])
def test_a_revision_that_names_a_folder_says_so_and_what_is_accepted(repo: Path, rev: str) -> None:
    result = cnnspec("diff", rev, "specs/a.yaml", cwd=repo)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"{rev}: error: cannot read {rev} from git: it is a folder, not a spec file"
    assert lines[1].startswith(f"  hint: {ACCEPTED}")


def test_a_bare_revision_says_what_is_accepted(repo: Path) -> None:
    result = cnnspec("diff", "HEAD", "specs/a.yaml", cwd=repo)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "HEAD: error: no such file: HEAD",
        f"  hint: {ACCEPTED} (PATH from the repository root, or ./PATH from here): HEAD~1:specs/x.yaml, main:./x.yaml",
    ]


def test_a_revision_of_a_missing_path_keeps_gits_reason_and_says_what_is_accepted(repo: Path) -> None:
    result = cnnspec("diff", "HEAD:specs/b.yaml", "specs/a.yaml", cwd=repo)
    assert result.returncode == 2
    assert "fatal: path 'specs/b.yaml' does not exist in 'HEAD'" in result.stderr
    assert f"hint: {ACCEPTED}" in result.stderr
