"""A run's own files (issue 14, attack findings A, B, C, H, P): cnnspec writes only its own files inside a
run, never through a link; no command reads a run a `train` is writing; a path too long for the OS is
one line, never a traceback; names made from the data fit before a run is replaced.

Real files, real links, FIFOs and folders, real flock locks; the writer of the lock tests is a real
`cnnspec train` process held still by cnnspec.atomic's test hook while it owns the run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

import cnnspec
from cnnspec.errors import CnnspecError
from cnnspec.rundir.lock import locked
from cnnspec.rundir.paths import LOCK_NAME, RunPaths
from tests.reliability._reliability_helpers import TINY, assert_refused, cli, report

CNNSPEC = [sys.executable, "-m", "cnnspec"]
RULE = "cnnspec writes only its own files inside a run"


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root` (links by their target, files by their bytes), but the lock file's record."""
    entries: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        name = str(p.relative_to(root))
        if p.is_symlink():
            entries[name] = "-> " + os.readlink(p)
        elif p.is_file() and p.name != LOCK_NAME:
            entries[name] = p.read_bytes()
    return entries


def _victim(tmp_path: Path, name: str = "victim.txt") -> tuple[Path, bytes]:
    path = tmp_path / "elsewhere" / name
    path.parent.mkdir(exist_ok=True)
    data = b"the user's own file, not the run's\n"
    path.write_bytes(data)
    return path, data


# --- A: the lock file --------------------------------------------------------------------------


def _symlink(path: Path, tmp_path: Path) -> tuple[Path, bytes]:
    victim, data = _victim(tmp_path)
    path.symlink_to(victim)
    return victim, data


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("symlink", "is a symbolic link to "),
        ("fifo", "is a FIFO (named pipe), not a regular file"),
        ("directory", "is a directory, not a regular file"),
    ],
)
def test_a_lock_file_that_is_a_link_fifo_or_folder_is_refused_and_nothing_is_written_through_it(
    copy_run: Callable[[str], Path], tmp_path: Path, kind: str, words: str
) -> None:
    run = copy_run("run")
    lock = RunPaths(run).lock
    lock.unlink()
    victim: Path | None = None
    if kind == "symlink":
        victim, data = _symlink(lock, tmp_path)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    before = _snapshot(run)
    refused = 0
    for args in (("train", "--resume", run, "--quiet"), ("evaluate", run), ("export", run)):
        result = cli(*args)
        assert_refused(result, f"{lock} {words}", RULE)
        refused += 1
    assert _snapshot(run) == before
    if victim is not None:
        assert victim.read_bytes() == data  # before: train --resume wrote its lock record into it, exit 0
    report("run-lock-file", kind=kind, commands_refused=refused, files_changed=0, written_through=0)


# --- B: files inside a run are the run's own ----------------------------------------------------


def _link_out(run: Path, name: str, tmp_path: Path) -> tuple[Path, bytes]:
    path = run / name
    path.unlink(missing_ok=True)
    victim, data = _victim(tmp_path, Path(name).name)
    path.symlink_to(victim)
    return victim, data


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("evaluation.json", ("evaluate", "{run}")),
        ("confusion_matrix.png", ("evaluate", "{run}")),
        ("model.onnx", ("export", "{run}")),
        ("result.json", ("train", "--resume", "{run}", "--quiet")),
        ("spec.yaml", ("train", "--resume", "{run}", "--set", "train.epochs=3", "--quiet")),
        ("metrics.jsonl", ("train", "--resume", "{run}", "--set", "train.epochs=3", "--quiet")),
        ("run.json", ("train", "{spec}", "--out", "{run}", "--quiet")),
    ],
)
def test_a_run_file_that_is_a_link_out_of_the_run_is_refused_and_its_target_kept(
    copy_run: Callable[[str], Path], tiny_spec: Path, tmp_path: Path, name: str, args: tuple[str, ...]
) -> None:
    run = copy_run("run")
    if name == "run.json":  # a fresh run replacing this one: is_run reads the record through the link
        (tmp_path / "elsewhere").mkdir()
        victim = tmp_path / "elsewhere" / "run.json"
        RunPaths(run).info.rename(victim)
        data = victim.read_bytes()
        RunPaths(run).info.symlink_to(victim)
    elif name == "spec.yaml":  # linked to the user's source spec, comments and all
        (tmp_path / "elsewhere").mkdir()
        victim = tmp_path / "elsewhere" / "source.yaml"
        data = RunPaths(run).spec.read_bytes() + b"# the user's comment\n"
        victim.write_bytes(data)
        RunPaths(run).spec.unlink()
        RunPaths(run).spec.symlink_to(victim)
    else:
        victim, data = _link_out(run, name, tmp_path)
    before = _snapshot(run)
    result = cli(*(a.format(run=run, spec=tiny_spec) for a in args))
    assert_refused(result, f"{run / name} is a symbolic link to {victim}", RULE)
    assert victim.read_bytes() == data
    assert _snapshot(run) == before  # nothing written, nothing removed
    report("run-file-link", file=name, command=args[0], refused=True, target_changed=False, run_changed=False)


def test_a_checkpoints_folder_linked_out_of_the_run_is_refused_before_anything_is_deleted(
    copy_run: Callable[[str], Path], tiny_spec: Path, tmp_path: Path
) -> None:
    run = copy_run("run")
    paths = RunPaths(run)
    models = tmp_path / "othermodels"
    paths.checkpoints.rename(models)  # the user's own weights, named like cnnspec's
    paths.checkpoints.symlink_to(models)
    theirs = {p.name: p.read_bytes() for p in models.iterdir()}
    before = _snapshot(run)
    for args in (("train", tiny_spec, "--out", run, "--quiet"), ("train", "--resume", run, "--quiet")):
        assert_refused(cli(*args), f"{paths.checkpoints} is a symbolic link to {models}", RULE)
    assert {p.name: p.read_bytes() for p in models.iterdir()} == theirs  # before: best.safetensors replaced
    assert _snapshot(run) == before
    report("run-checkpoints-link", commands_refused=2, user_files_changed=0)


# --- C: no reader while a train writes, no writer while anyone reads --------------------------------


def test_a_train_is_refused_while_an_export_reads_the_run_and_an_evaluate_while_a_train_holds_it(
    copy_run: Callable[[str], Path],
) -> None:
    run = copy_run("run")
    before = _snapshot(run)
    with locked(run, "cnnspec export", shared=True):  # what an export to elsewhere holds while it reads
        assert_refused(cli("train", "--resume", run, "--quiet"), f"{run} is being read by another cnnspec process")
        assert_refused(cli("evaluate", run), "is being read by another cnnspec process")
        with locked(run, "cnnspec bench", shared=True):  # readers share the run
            pass
    with locked(run, "cnnspec train"):
        assert_refused(cli("export", run, "--out", run.parent / "again.onnx"), "`cnnspec train`")
    assert _snapshot(run) == before
    report("run-lock-shared", writer_refused_by_reader=True, reader_refused_by_writer=True, readers_share=True)


# --- H: paths too long for the OS ----------------------------------------------------------------


def test_every_command_answers_a_path_too_long_with_one_line(
    trained_run: Path, tiny_spec: Path, tmp_path: Path
) -> None:
    long_name = "L" * 300
    deep = "/".join(["d" * 250] * 17)  # every name fits; the whole path does not (4,266 bytes)
    onnx = tmp_path / "model.onnx"
    assert cli("export", trained_run, "--out", onnx).code == 0
    cases: list[tuple[str | Path, ...]] = [
        ("validate", f"{long_name}.yaml"),
        ("summary", f"{long_name}.yaml"),
        ("summary", tiny_spec, "--plot", f"{long_name}.png"),
        ("fmt", f"{long_name}.yaml"),
        ("init", "digits", f"{long_name}.yaml"),
        ("train", tiny_spec, "--out", tmp_path / long_name),
        ("train", "--resume", tmp_path / long_name),
        ("evaluate", tmp_path / long_name),
        ("export", tmp_path / long_name),
        ("export", trained_run, "--out", tmp_path / f"{long_name}.onnx"),
        ("predict", onnx, tmp_path / f"{long_name}.png"),
        ("predict", tmp_path / f"{long_name}.onnx", onnx),
        ("bench", tmp_path / long_name),
        ("schema", "--out", tmp_path / f"{long_name}.json"),
        ("evaluate", tmp_path / deep),
    ]
    for args in cases:
        result = cli(*args)
        why = "path too long (4," if args[-1] == tmp_path / deep else "file name too long ("
        assert_refused(result, why, "the limit is ")
        assert "cannot write" not in result.stderr, (args, result.stderr)  # export used to say so of a read
    report("path-too-long", commands=len(cases), tracebacks=0)


# --- P: names made from the data fit before anything is deleted ---------------------------------------


def _image_folder(root: Path, classes: list[str]) -> None:
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("L", (8, 8), 40 + 150 * c + 10 * i).save(folder / f"{i}.png")


def _folder_spec(tmp_path: Path, data: Path) -> Path:
    spec = tmp_path / "folder.yaml"
    spec.write_text(
        TINY.replace("{name: synthetic, num_samples: 64, num_classes: 4}", f"{{name: image_folder, root: {data}}}")
        .replace("out_features: 4", "out_features: 2")
        .replace("batch_size: 16", "batch_size: 4\n  num_workers: 0\n  resize: [8, 8]")
        .replace("epochs: 2", "epochs: 1"),
        encoding="utf-8",
    )
    return spec


def test_a_class_name_as_long_as_a_file_name_replaces_a_run_whole(
    copy_run: Callable[[str], Path], tmp_path: Path
) -> None:
    data = tmp_path / "images"
    long_class = "c" * 250  # a legal folder name; CLASS_idx0.png made of it is not
    _image_folder(data, [long_class, "dog"])
    run = copy_run("run")
    cnnspec.train(
        _folder_spec(tmp_path, data), out=run, progress=False
    )  # before: OSError after the old run was deleted
    samples = sorted(p.name for p in RunPaths(run).samples.iterdir())
    assert samples and all(len(name.encode()) <= 255 for name in samples)
    assert any(name.startswith("c" * 100 + "_idx") for name in samples)
    assert json.loads(RunPaths(run).info.read_text())["class_names"] == sorted([long_class, "dog"])
    assert RunPaths(run).weights("best").is_file() and RunPaths(run).result.is_file()
    report("data-names", class_name_bytes=250, sample_name_bytes=max(len(n) for n in samples), run_whole=True)


def test_a_sample_path_too_long_is_refused_before_the_previous_run_is_deleted(
    copy_run: Callable[[str], Path], trained_run: Path, tmp_path: Path
) -> None:
    data = tmp_path / "images"
    _image_folder(data, ["c" * 120, "dog"])
    # A run folder 4,045 bytes long: its own files fit under it (the longest, a temporary checkpoint,
    # adds 42 bytes), the samples/ccc…_idx0.png of a class named with 120 letters (114 bytes) does not.
    length = 4045 - len(str(tmp_path))
    names = ["r" * 250] * (length // 251) + ["r" * (length % 251 - 1)]
    root = tmp_path.joinpath(*names)
    assert len(str(root)) == 4045
    root.parent.mkdir(parents=True)
    os.rename(copy_run("run"), root)
    before = _snapshot(root)
    with pytest.raises(CnnspecError, match="path too long") as info:
        cnnspec.train(_folder_spec(tmp_path, data), out=root, progress=False)
    assert "c_idx" in info.value.format()
    assert _snapshot(root) == before  # before: its checkpoints and metrics deleted, then "cannot write"
    report("data-names-before-delete", run_path_bytes=4045, refused=True, files_deleted=0)


# --- minor: fmt keeps hard links; paths in success lines are escaped -----------------------------------


def test_fmt_rewrites_a_hard_linked_spec_in_place(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text("train: {epochs: 2, seed: 5}\n" + TINY.replace("train: {epochs: 2, seed: 5}\n", ""))
    first.chmod(0o600)
    second = tmp_path / "b.yaml"
    os.link(first, second)
    inode = first.stat().st_ino
    result = cli("fmt", first)
    assert result.code == 0 and "reformatted" in result.stderr, result.output
    assert first.stat().st_ino == inode and first.stat().st_nlink == 2  # before: a new file, the link broken
    assert second.read_text() == first.read_text() != "train" and first.read_text().startswith("name: tiny")
    assert first.stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    report("fmt-hard-link", names=2, same_inode=True, both_formatted=True)


def test_paths_in_success_lines_are_escaped(tiny_spec: Path, tmp_path: Path) -> None:
    hostile = "a\nb\x1b[31mred"
    out = tmp_path / hostile
    trained = cli("train", tiny_spec, "--out", out, "--set", "train.epochs=1", "--quiet")
    assert trained.code == 0, trained.output
    evaluated = cli("evaluate", out)
    assert evaluated.code == 0, evaluated.output
    spec = tmp_path / f"{hostile}.yaml"
    spec.write_text("train: {epochs: 2, seed: 5}\n" + TINY.replace("train: {epochs: 2, seed: 5}\n", ""))
    formatted = cli("fmt", spec)
    assert formatted.code == 0, formatted.output
    escaped = "a\\nb\\x1b[31mred"
    assert f"{escaped}: test accuracy" in trained.stdout
    assert f"wrote {tmp_path}/{escaped}/evaluation.json" in evaluated.stdout
    assert f"reformatted {tmp_path}/{escaped}.yaml" in formatted.stderr
    for result in (trained, evaluated, formatted):
        assert "\x1b" not in result.output  # before: the escape sequence reached the terminal


def test_a_lock_file_hard_linked_to_a_users_file_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("PRECIOUS\n", encoding="utf-8")
    os.link(precious, run / LOCK_NAME)
    with pytest.raises(CnnspecError) as caught, locked(run, "cnnspec evaluate"):
        pass
    assert "is a hard link to another file" in caught.value.format()
    assert precious.read_text(encoding="utf-8") == "PRECIOUS\n"
