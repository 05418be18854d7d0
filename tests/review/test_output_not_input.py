"""`-o` never replaces a command's own input spec: named directly, through a symbolic link or a hard link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture
def specs(tmp_path: Path) -> tuple[Path, Path]:
    old = tmp_path / "a.yaml"
    old.write_text((SPECS / "small_cnn.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    new = tmp_path / "b.yaml"
    new.write_text(old.read_text(encoding="utf-8").replace("out_channels: 64", "out_channels: 96"), encoding="utf-8")
    return old, new


@pytest.mark.parametrize("fmt", ["html", "markdown", "json", "text"])
@pytest.mark.parametrize("which", [0, 1])
def test_diff_refuses_to_write_its_report_over_old_or_new(specs: tuple[Path, Path], fmt: str, which: int) -> None:
    before = [p.read_bytes() for p in specs]
    result = run_cli("diff", str(specs[0]), str(specs[1]), "--format", fmt, "-o", str(specs[which]))
    assert result.exit_code == 2
    assert f"it is the input {specs[which]}" in result.stderr
    assert [p.read_bytes() for p in specs] == before


def test_graph_refuses_a_symbolic_link_to_its_spec(specs: tuple[Path, Path], tmp_path: Path) -> None:
    link = tmp_path / "drawing.svg"
    link.symlink_to(specs[0])
    before = specs[0].read_bytes()
    result = run_cli("graph", str(specs[0]), "-o", str(link))
    assert result.exit_code == 1
    assert "it is the input" in result.stderr
    assert specs[0].read_bytes() == before and link.is_symlink()


def test_diff_refuses_a_hard_link_to_new(specs: tuple[Path, Path], tmp_path: Path) -> None:
    linked = tmp_path / "report.html"
    os.link(specs[1], linked)
    before = specs[1].read_bytes()
    result = run_cli("diff", str(specs[0]), str(specs[1]), "--format", "html", "-o", str(linked))
    assert result.exit_code == 2
    assert specs[1].read_bytes() == before


def test_graph_still_writes_a_new_file_beside_its_spec(specs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "drawing.svg"
    assert run_cli("graph", str(specs[0]), "-o", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8").lstrip().startswith("<")


@pytest.mark.parametrize("spelled", ["HEAD:specs/a.yaml", "HEAD:./a.yaml"])
def test_diff_refuses_the_working_copy_of_a_rev_path_input(tmp_path: Path, spelled: str) -> None:
    """`diff HEAD:specs/a.yaml b.yaml -o a.yaml`: a.yaml is the working copy of the old spec (issue 18)."""
    from tests.review.review_helpers import cnnspec, git, git_repo

    repo = git_repo(tmp_path / "repo")
    folder = repo / "specs"
    folder.mkdir()
    working = folder / "a.yaml"
    working.write_text((SPECS / "small_cnn.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "a", cwd=repo)
    edited = working.read_text(encoding="utf-8").replace("out_channels: 64", "out_channels: 96")
    working.write_text(edited, encoding="utf-8")  # uncommitted work the -o must not replace
    (folder / "b.yaml").write_text(edited.replace("out_channels: 96", "out_channels: 128"), encoding="utf-8")
    result = cnnspec("diff", spelled, "b.yaml", "--format", "markdown", "-o", "a.yaml", cwd=folder)
    assert result.returncode == 2, result.stderr
    assert "it is the input" in result.stderr and "a.yaml" in result.stderr
    assert working.read_text(encoding="utf-8") == edited
    # another file is still written
    assert cnnspec("diff", spelled, "b.yaml", "--format", "markdown", "-o", "r.md", cwd=folder).returncode == 1
    assert (folder / "r.md").read_text(encoding="utf-8").strip()
