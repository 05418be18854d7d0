"""`cnnspec init TEMPLATE PATH`: a trailing slash or an existing folder means "write into this folder"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def init(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", "init", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_init_into_a_missing_folder_with_a_trailing_slash_creates_the_folder(tmp_path: Path) -> None:
    proc = init("digits", "specs/", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "specs").is_dir()
    assert (tmp_path / "specs" / "digits.yaml").is_file()
    assert "name: digits" in (tmp_path / "specs" / "digits.yaml").read_text(encoding="utf-8")
    assert "wrote specs/digits.yaml" in proc.stderr


def test_init_into_an_existing_folder_without_a_slash_writes_the_template_file_inside(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    proc = init("deeper-cnn", "models", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["deeper_cnn.yaml"]


def test_init_to_a_missing_path_without_a_slash_writes_that_file(tmp_path: Path) -> None:
    proc = init("digits", "nested/mine.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "nested" / "mine.yaml").is_file()
    bare = init("digits", "specs", cwd=tmp_path)  # no slash, no folder: the path is the file
    assert bare.returncode == 0, bare.stderr
    assert (tmp_path / "specs").is_file()


def test_init_into_a_folder_path_that_is_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "specs").write_text("not a folder\n")
    proc = init("digits", "specs/", cwd=tmp_path)
    assert proc.returncode == 1
    assert "specs/ is not a folder" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "specs").read_text() == "not a folder\n"
