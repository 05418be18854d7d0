"""A run directory: only cnnspec's own runs are replaced, only cnnspec's files are deleted, one writer at a time.

The writers are real `cnnspec train` processes. The first one is held still while it owns the
run (cnnspec.atomic's test hook SIGSTOPs it before it renames its first metrics.jsonl), so the
second one meets a live holder every time, not by a race.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnspec.atomic import STOP_BEFORE_RENAME
from cnnspec.rundir.lock import locked
from cnnspec.rundir.paths import LOCK_NAME, RunPaths
from tests.reliability._reliability_helpers import TINY, assert_refused, child_env, cli, report

CNNSPEC = [sys.executable, "-m", "cnnspec"]


def _train(spec: Path, out: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CNNSPEC, "train", str(spec), "--out", str(out)],
        env={**child_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cnnspec(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m cnnspec ARGS` in a child with one intra-op thread, as the folder's other children run."""
    return subprocess.run([*CNNSPEC, *args], capture_output=True, text=True, env=child_env())


def _stopped(pid: int) -> bool:
    """True once the process is stopped by a signal (the state field of Linux's /proc/PID/stat)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def _wait_stopped(proc: subprocess.Popen[str], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not _stopped(proc.pid):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first writer never reached its first metrics write"
        time.sleep(0.05)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def _files(root: Path) -> dict[str, bytes]:
    """Every file of the folder and its bytes, but the lock file (each writer records itself in it)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_NAME
    }


def test_a_folder_with_another_tools_run_json_is_refused_and_left_untouched(spec: Path, tmp_path: Path) -> None:
    other = tmp_path / "project"
    (other / "checkpoints").mkdir(parents=True)
    (other / "samples").mkdir()
    (other / "run.json").write_text('{"experiment": "mine", "lr": 0.1}\n')
    (other / "checkpoints" / "epoch3.pth").write_bytes(b"weights of another tool")
    (other / "samples" / "cat_0.jpg").write_bytes(b"\xff\xd8 a photo")
    before = _files(other)
    proc = _cnnspec("train", str(spec), "--out", str(other))
    assert proc.returncode == 1
    assert "is a non-empty folder that is not a cnnspec run (its run.json is not a cnnspec run record)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _files(other) == before
    assert not (other / LOCK_NAME).exists()


def test_replacing_a_run_deletes_only_the_files_cnnspec_wrote(spec: Path, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)  # the first run: a copy of one that a real `cnnspec train` wrote
    written = set(_files(out))
    assert {"run.json", "spec.yaml", "checkpoints/best.safetensors", "checkpoints/last.state.pt"} <= written
    mine = {
        "notes.txt": b"my notes",
        "checkpoints/mine.pth": b"my weights",
        "samples/photo.jpg": b"my photo",
        "samples/cat_idx3.png.bak": b"a backup",
    }
    for name, data in mine.items():
        (out / name).write_bytes(data)
    (out / "metrics.jsonl").write_text('{"epoch": 99}\n')  # cnnspec's name: replaced
    second = _cnnspec("train", str(spec), "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert "replacing the previous run" in second.stderr
    after = _files(out)
    assert {name: after.get(name) for name in mine} == mine
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_second_writer_is_refused_with_who_holds_the_run(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _train(spec, out, **{STOP_BEFORE_RENAME: "metrics.jsonl:1"})
    try:
        _wait_stopped(first)
        second = _cnnspec("train", str(spec), "--out", str(out))
        assert second.returncode == 1
        assert f"is being written by another cnnspec process (pid {first.pid} on " in second.stderr
        assert "`cnnspec train`" in second.stderr
        assert "Traceback" not in second.stderr
        resumed = _cnnspec("train", "--resume", str(out))
        assert resumed.returncode == 1 and f"(pid {first.pid} on " in resumed.stderr
        # Nor does anything read the weights it is still changing (issue 14, attack finding C: evaluate
        # and export read them as "best", mid-run, exit 0): refused with the same holder, nothing written.
        elsewhere = tmp_path / "elsewhere.onnx"
        readers: list[list[str | Path]] = [
            ["evaluate", out],
            ["export", out],
            ["export", out, "--out", elsewhere],
            ["bench", out],
        ]
        for args in readers:
            reader = cli(*args)
            assert_refused(
                reader, f"is being written by another cnnspec process (pid {first.pid} on ", "`cnnspec train`"
            )
        assert not (out / "evaluation.json").exists() and not (out / "model.onnx").exists()
        assert not elsewhere.exists()
        report("run-lock-readers", writer="a real `cnnspec train` process", readers_refused=4, mixed_reads=0)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    # The run is the first writer's alone: its record, spec and two epochs.
    info = json.loads(RunPaths(out).info.read_text())
    assert info["spec_name"] == "tiny"
    assert [json.loads(line)["epoch"] for line in RunPaths(out).metrics.read_text().splitlines()] == [1, 2]


def test_a_killed_writer_leaves_no_lock_behind(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _train(spec, out, **{STOP_BEFORE_RENAME: "metrics.jsonl:1"})
    _wait_stopped(first)
    first.kill()
    first.communicate(timeout=60)
    assert (out / LOCK_NAME).exists()  # the file stays; the lock went with the process
    second = _cnnspec("train", str(spec), "--out", str(out))
    assert second.returncode == 0, second.stderr


def test_the_library_refuses_a_run_locked_in_this_process_and_trains_once_it_is_released(
    spec: Path, tmp_path: Path
) -> None:
    import cnnspec
    from cnnspec.errors import CheckpointError

    out = tmp_path / "run"
    with locked(out, "a notebook cell"):
        with pytest.raises(CheckpointError, match="`a notebook cell`"):
            cnnspec.train(spec, out=out, progress=False)
        assert not RunPaths(out).info.exists()  # refused before anything was written
    assert cnnspec.train(spec, out=out, progress=False) == out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run of the tiny spec, trained by a real `cnnspec train` process."""
    folder = tmp_path_factory.mktemp("trained")
    spec = folder / "tiny.yaml"
    spec.write_text(TINY, encoding="utf-8")
    out = folder / "run"
    proc = _cnnspec("train", str(spec), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate the state", "last.state.pt cannot be read"),
        ("delete the state", "its training state (last.state.pt) is missing, though its weights are there"),
        ("flip a byte of best", "best.safetensors"),
    ],
)
def test_a_refused_resume_rewrites_nothing(trained_run: Path, tmp_path: Path, damage: str, message: str) -> None:
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)  # a copy of one trained run: each case damages its own
    paths = RunPaths(out)
    if damage == "delete the state":
        paths.state.unlink()
    elif damage == "truncate the state":
        paths.state.write_bytes(paths.state.read_bytes()[:-300])
    else:  # a weight's bytes (the middle of a tiny model's file): its stored hash no longer matches
        data = bytearray(paths.weights("best").read_bytes())
        data[len(data) // 2] ^= 0x01
        paths.weights("best").write_bytes(bytes(data))
    before = _files(out)
    proc = _cnnspec("train", "--resume", str(out), "--set", "train.epochs=4", "--set", "optimizer.lr=0.01")
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "start it again" not in proc.stderr  # following that would replace the run's weights
    assert "Traceback" not in proc.stderr
    assert _files(out) == before  # spec.yaml and run.json still say what the weights were trained with


def test_a_run_started_from_relative_pretrained_weights_reopens_for_evaluate_export_and_resume(
    tmp_path: Path,
) -> None:
    from safetensors.torch import save_file

    import cnnspec

    project = tmp_path / "project"
    project.mkdir()
    spec_text = TINY.replace("  layers:", "  weights: start.safetensors\n  layers:", 1)
    (project / "tiny.yaml").write_text(spec_text, encoding="utf-8")
    start = cnnspec.build(cnnspec.loads(TINY))
    save_file({k: v.contiguous() for k, v in start.state_dict().items()}, project / "start.safetensors")
    out = tmp_path / "runs" / "tiny"  # elsewhere: spec.yaml's relative path means nothing there
    trained = _cnnspec("train", str(project / "tiny.yaml"), "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    # Reopened by the commands in this process: the same folder and working directory as a new
    # `cnnspec` process, three interpreters (each importing torch) fewer.
    for args in (
        ["evaluate", str(out)],
        ["export", str(out)],
        ["train", "--resume", str(out), "--set", "train.epochs=3"],
    ):
        reopened = cli(*args)
        assert (reopened.code, reopened.exception) == (0, None), (args, reopened.stderr)
    assert [json.loads(line)["epoch"] for line in RunPaths(out).metrics.read_text().splitlines()] == [1, 2, 3]
