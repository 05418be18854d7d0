"""Atomic writes (the file a plain open() would make, nothing left behind when the writer fails), and the
training state's format check."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnspec.atomic import TMP_PREFIX, atomic_write_text, atomic_write_with
from cnnspec.errors import CheckpointError
from cnnspec.rundir.weights import STATE_FORMAT, load_state, save_state


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0)  # reading the umask means setting it
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_the_umask_gives_a_plain_open(
    tmp_path: Path, umask: None, mask: int, mode: int
) -> None:
    os.umask(mask)
    target = tmp_path / "spec.yaml"
    atomic_write_text(target, "name: x\n")
    assert stat.S_IMODE(target.stat().st_mode) == mode
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: x\n")
    assert stat.S_IMODE(plain.stat().st_mode) == mode


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_with(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert not any(p.name.startswith(TMP_PREFIX) for p in tmp_path.iterdir())


# --- the training state's own format check ----------------------------------------------


@pytest.mark.parametrize(
    "content",
    [{"format": STATE_FORMAT + 1, "epoch": 3}, {"epoch": 3}, [1, 2, 3]],
    ids=["newer-format", "no-format", "not-a-mapping"],
)
def test_a_file_that_is_not_a_training_state_of_this_format_is_refused(tmp_path: Path, content: object) -> None:
    path = tmp_path / "state.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=f"is not a cnnspec training state \\(format {STATE_FORMAT}\\)"):
        load_state(path)


def test_a_training_state_reads_back_what_was_saved(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_state(path, {"format": STATE_FORMAT, "epoch": 3, "weights": {"w": torch.ones(2)}})
    state = load_state(path)
    assert state["epoch"] == 3 and torch.equal(state["weights"]["w"], torch.ones(2))
