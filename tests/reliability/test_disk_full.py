"""A full disk and a read-only run directory: a clear error, exit 1, the previous checkpoint intact.

Three ways to make writes fail: a patched low-level write that fills half the temporary
file and then raises ENOSPC (runs everywhere); a real 1 MiB tmpfs filled to the last page
(needs root and mount; skipped with the reason otherwise); and a read-only run directory,
by chmod (skipped as root, which ignores it), by a read-only bind mount (root), and by a
patched mkstemp raising EACCES (everywhere).
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import cnnspec
import cnnspec.atomic
from cnnspec.atomic import TMP_PREFIX
from cnnspec.errors import CheckpointError
from cnnspec.rundir.paths import LOCK_NAME, RunPaths
from cnnspec.rundir.weights import load_state, read_weights
from cnnspec.training.progress import Reporter
from tests.reliability._reliability_helpers import (
    LONG_EPOCHS,
    assert_checkpoints_finite_and_loadable,
    assert_refused,
    cli,
    report,
    temporaries,
)

EPOCHS = LONG_EPOCHS


def _same_weights(run: Path, reference: Path) -> bool:
    ours, ref = read_weights(RunPaths(run).weights("last")), read_weights(RunPaths(reference).weights("last"))
    return ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ref)


def _epochs_in_metrics(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in RunPaths(run).metrics.read_text().splitlines()]


# --- a patched low-level write -------------------------------------------------------------


def _fail_nth_write(monkeypatch: pytest.MonkeyPatch, target: str, nth: int, error: int = errno.ENOSPC) -> list[int]:
    """Make the `nth` atomic write of a file named `target` write half its bytes, then fail with `error`."""
    real = pathlib.Path.write_bytes
    calls = [0]

    def write_bytes(self: pathlib.Path, data: bytes) -> int:
        if self.name.startswith(f"{TMP_PREFIX}{target}."):
            calls[0] += 1
            if calls[0] == nth:
                with open(self, "wb") as f:
                    f.write(data[: len(data) // 2])
                raise OSError(error, os.strerror(error))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    return calls


@pytest.mark.parametrize("target", ["best.safetensors", "last.safetensors", "last.state.pt", "metrics.jsonl"])
def test_enospc_while_writing_fails_cleanly_and_keeps_the_previous_checkpoint(
    target: str, spec: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    _fail_nth_write(monkeypatch, target, nth=3)  # the third epoch's write
    where = run / target if target == "metrics.jsonl" else RunPaths(run).checkpoints / target
    assert_refused(cli("train", spec, "--out", run, "--quiet"), f"cannot write {where}: No space left on device")
    assert temporaries(run) == [], "the half-written temporary file was left behind"
    assert load_state(RunPaths(run).state)["epoch"] == 2  # the last complete checkpoint, intact
    assert assert_checkpoints_finite_and_loadable(run) == 3
    assert _epochs_in_metrics(run) in ([1, 2], [1, 2, 3])  # metrics.jsonl is written before the state

    monkeypatch.undo()  # space is back
    result = cli("train", "--resume", run, "--quiet")
    assert result.code == 0, result.output
    assert _same_weights(run, reference)
    assert _epochs_in_metrics(run) == [1, 2, 3, 4]
    report("disk-full-patched", file=target, failed_at="epoch 3", kept="epoch 2", resumed_equal=True)


def test_enospc_when_exporting_writes_nothing(reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnx.save writes through its own file object: fail that write as a full disk does."""
    import onnx

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(onnx, "save", full)
    out = tmp_path / "exported" / "model.onnx"
    assert_refused(cli("export", reference, "--out", out), f"cannot write {out}: No space left on device")
    assert not out.exists() and temporaries(out.parent) == []


# --- a real full disk: a tiny tmpfs ---------------------------------------------------------


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, or a skip saying why there is none."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs, and mounting one needs root; the patched writer covers it")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the patched writer covers it")
    try:
        yield disk
    finally:
        _umount(disk)


def _fill(disk: Path) -> Path:
    """Write a file until the disk is full (to the last page)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush on close
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


class FillDiskAfter(Reporter):
    """Fills the disk the moment epoch `epoch` is saved (end_epoch comes after the checkpoint)."""

    def __init__(self, disk: Path, epoch: int):
        self.disk, self.epoch = disk, epoch

    def end_epoch(self, metrics: dict[str, object], epochs: int) -> None:
        if metrics["epoch"] == self.epoch:
            _fill(self.disk)


def test_a_real_full_tmpfs_fails_cleanly_and_resume_finishes_once_space_is_back(
    tmpfs: Path, spec: Path, reference: Path
) -> None:
    run = tmpfs / "run"
    with pytest.raises(CheckpointError) as info:
        cnnspec.train(spec, out=run, progress=FillDiskAfter(tmpfs, 2))
    message = info.value.format()
    assert "No space left on device" in message and f"cannot write {run}" in message
    assert load_state(RunPaths(run).state)["epoch"] == 2
    assert assert_checkpoints_finite_and_loadable(run) == 3
    assert temporaries(run) == []

    # Still full: the CLI says so, exit 1, and nothing it held is touched.
    before = {p.name: p.read_bytes() for p in RunPaths(run).checkpoints.iterdir()}
    result = cli("train", "--resume", run, "--quiet")
    assert_refused(result, "No space left on device", "--resume")
    assert {p.name: p.read_bytes() for p in RunPaths(run).checkpoints.iterdir()} == before
    assert temporaries(run) == []

    (tmpfs / "filler").unlink()
    result = cli("train", "--resume", run, "--quiet")
    assert result.code == 0, result.output
    assert _same_weights(run, reference)
    report("disk-full-tmpfs", disk="1MiB tmpfs", failed_writes=2, tracebacks=0, lost_checkpoints=0, resumed_equal=True)


# --- a read-only run directory ---------------------------------------------------------------


def _snapshot(run: Path) -> dict[str, bytes]:
    """Every file of the run and its bytes, but the lock file (each writer records itself in it)."""
    files = sorted(p for p in run.rglob("*") if p.is_file() and p.name != LOCK_NAME)
    return {str(p.relative_to(run)): p.read_bytes() for p in files}


def _refusals_in_a_read_only_run(run: Path, spec: Path, reason: str, *, export: bool) -> int:
    """Resume (with more epochs: the finished run's result.json goes first, then spec.yaml changes; as it
    is: result.json is rewritten), evaluate,
    export and a fresh train into `run`: each refused with exit 1, and no file of the run changed."""
    before = _snapshot(run)
    attempts: list[tuple[tuple[str | Path, ...], str]] = [
        (("train", "--resume", run, "--set", "train.epochs=6", "--quiet"), f"cannot write {run / 'result.json'}"),
        (("train", "--resume", run, "--quiet"), f"cannot write {run / 'result.json'}"),
        (("evaluate", run), f"cannot write {run / 'evaluation.json'}"),
        (("train", spec, "--out", run, "--quiet"), f"cannot write {run}"),
    ]
    if export:  # the export itself takes seconds before the write fails
        attempts.append((("export", run), f"cannot write {run / 'model.onnx'}"))
    for args, needle in attempts:
        assert_refused(cli(*args), needle, reason)
    assert _snapshot(run) == before
    return len(attempts)


def _two_epoch_run(spec: Path, folder: Path) -> Path:
    return cnnspec.train(spec, out=folder, overrides=["train.epochs=2"], progress=False)


@pytest.mark.slow
def test_a_chmod_read_only_run_directory_is_refused(spec: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores chmod; the read-only bind mount and the patched mkstemp tests cover this")
    run = _two_epoch_run(spec, tmp_path / "run")
    folders = [run, RunPaths(run).checkpoints]
    for folder in folders:
        folder.chmod(0o555)
    try:
        _refusals_in_a_read_only_run(run, spec, "Permission denied", export=True)
    finally:
        for folder in folders:
            folder.chmod(0o755)


@pytest.mark.slow
def test_a_read_only_bind_mount_run_directory_is_refused(spec: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root; the chmod and patched mkstemp tests cover this")
    run = _two_epoch_run(spec, tmp_path / "run")
    done = _mount("--bind", str(run), str(run))
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({done.stderr.strip()}); the patched mkstemp test covers this")
    try:
        remount = _mount("-o", "remount,bind,ro", str(run))
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only here ({remount.stderr.strip()})")
        count = _refusals_in_a_read_only_run(run, spec, "Read-only file system", export=True)
    finally:
        _umount(run)
    report("read-only-run", how="read-only bind mount", commands_refused=count, files_changed=0)


def test_a_read_only_run_directory_by_patched_mkstemp_is_refused(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _two_epoch_run(spec, tmp_path / "run")
    real_mkstemp = cnnspec.atomic.tempfile.mkstemp
    real_unlink = pathlib.Path.unlink

    def mkstemp(*args: object, dir: str | Path | None = None, **kwargs: object) -> tuple[int, str]:
        if dir is not None and Path(dir).resolve().is_relative_to(run.resolve()):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)  # type: ignore[call-overload,no-any-return]

    def unlink(self: pathlib.Path, missing_ok: bool = False) -> None:
        if self.resolve().is_relative_to(run.resolve()):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(cnnspec.atomic.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    count = _refusals_in_a_read_only_run(run, spec, "Permission denied", export=False)
    report("read-only-run-patched", how="mkstemp and unlink raising EACCES", commands_refused=count, files_changed=0)
