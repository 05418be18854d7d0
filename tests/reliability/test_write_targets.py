"""Where writes go (issue 14, item 3): regular files only, symlinks followed to their target, the
old file's mode kept; `export --out` never over the run's own files.

Special files are real: a FIFO, a listening Unix socket, a directory, and (as root) a character
device made with mknod with /dev/null's numbers inside tmp_path, so a broken writer replaces the
test's node, never the system's.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from onnx import helper

from cnnspec.atomic import TMP_PREFIX, NotRegularFileError, atomic_write_text
from cnnspec.rundir.paths import RunPaths
from tests.cli_helpers import run_cli
from tests.export._export_helpers import TINY_GREY, make_run


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _char_device(path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    null = os.stat("/dev/null").st_rdev
    os.mknod(path, 0o666 | stat.S_IFCHR, null)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    made: list[socket.socket] = []

    def make(path: Path) -> Path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        made.append(s)
        return path

    yield make
    for s in made:
        s.close()


KINDS = {
    "fifo": (_fifo, stat.S_ISFIFO, "a FIFO (named pipe)"),
    "directory": (_directory, stat.S_ISDIR, "a directory"),
    "device": (_char_device, stat.S_ISCHR, "a character device"),
}


def _special(kind: str, path: Path, unix_socket: Callable[[Path], Path]) -> tuple[Path, Callable[[int], bool], str]:
    if kind == "socket":
        return unix_socket(path), stat.S_ISSOCK, "a socket"
    make, test, words = KINDS[kind]
    return make(path), test, words


SPECIAL = ["fifo", "directory", "device", "socket"]


@pytest.mark.parametrize("kind", SPECIAL)
def test_atomic_write_refuses_a_special_file_and_leaves_it(
    tmp_path: Path, kind: str, unix_socket: Callable[[Path], Path]
) -> None:
    target, is_kind, words = _special(kind, tmp_path / "out.onnx", unix_socket)
    with pytest.raises(NotRegularFileError, match=re.escape(f"it is {words}")):
        atomic_write_text(target, "data")
    assert is_kind(os.lstat(target).st_mode), f"{kind} was replaced"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory, "tiny_grey", TINY_GREY)


@pytest.mark.parametrize("kind", SPECIAL)
def test_export_out_to_a_special_file_is_refused_before_exporting(
    tiny_run: Path, tmp_path: Path, kind: str, unix_socket: Callable[[Path], Path]
) -> None:
    target, is_kind, words = _special(kind, tmp_path / "model.onnx", unix_socket)
    result = run_cli("export", str(tiny_run), "--out", str(target))
    assert result.exit_code == 1, result.output
    assert f"cannot write {target}: it is {words}; only regular files are written" in result.stderr
    assert is_kind(os.lstat(target).st_mode)


@pytest.mark.parametrize(
    "own",
    [
        lambda p: p.weights("best"),
        lambda p: p.weights("last"),
        lambda p: p.spec,
        lambda p: p.info,
        lambda p: p.checkpoints / "other.onnx",
        lambda p: p.lock,
        lambda p: p.samples / "x.png",
    ],
    ids=["best.safetensors", "last.safetensors", "spec.yaml", "run.json", "checkpoints/other.onnx", "lock", "samples"],
)
def test_export_out_over_the_runs_own_files_is_refused(
    tmp_path_factory: pytest.TempPathFactory, own: Callable[[RunPaths], Path]
) -> None:
    run = make_run(tmp_path_factory, "own", TINY_GREY)
    target = own(RunPaths(run))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = run_cli("export", str(run), "--out", str(target))
    assert result.exit_code == 1, result.output
    name = target.relative_to(run).as_posix()
    assert f"refused to write {target}: it is {name} of the run being exported" in result.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "own",
    [lambda p: p.weights("best"), lambda p: p.spec, lambda p: p.checkpoints / "other.onnx"],
    ids=["best.safetensors", "spec.yaml", "checkpoints/other.onnx"],
)
def test_export_out_over_another_runs_own_files_is_refused(
    tmp_path_factory: pytest.TempPathFactory, own: Callable[[RunPaths], Path]
) -> None:
    run = make_run(tmp_path_factory, "exported", TINY_GREY)
    other = make_run(tmp_path_factory, "other", TINY_GREY)
    target = own(RunPaths(other))
    before = {p: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    result = run_cli("export", str(run), "--out", str(target))
    assert result.exit_code == 1, result.output
    name = target.relative_to(other).as_posix()
    assert f"refused to write {target}: it is {name} of the run {other}" in result.stderr
    assert {p: p.read_bytes() for p in other.rglob("*") if p.is_file()} == before


def test_export_out_through_a_symlink_or_hard_link_to_the_runs_spec_is_refused(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run = make_run(tmp_path_factory, "linked", TINY_GREY)
    spec = RunPaths(run).spec
    before = spec.read_bytes()
    link = tmp_path / "model.onnx"
    link.symlink_to(spec)
    hard = tmp_path / "hard.onnx"
    os.link(spec, hard)
    for target in (link, hard):
        result = run_cli("export", str(run), "--out", str(target))
        assert result.exit_code == 1, result.output
        assert "of the run being exported" in result.stderr
    assert spec.read_bytes() == before and link.is_symlink()


def test_export_through_a_symlink_writes_its_target_and_keeps_the_link(tiny_run: Path, tmp_path: Path) -> None:
    real = tmp_path / "store" / "model.onnx"
    real.parent.mkdir()
    old = helper.make_model(helper.make_graph([], "old", [], []))  # an export replaces only an ONNX model
    real.write_bytes(old.SerializeToString())
    before = real.read_bytes()
    real.chmod(0o600)
    link = tmp_path / "latest.onnx"
    link.symlink_to(real)
    result = run_cli("export", str(tiny_run), "--out", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() != before and real.stat().st_size > 1000
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert not [p for p in real.parent.iterdir() if p.name.startswith(TMP_PREFIX)]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_rewriting_a_file_keeps_its_mode(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")
    target.chmod(mode)
    old = os.umask(0o022)  # a umask that would give 0644
    try:
        atomic_write_text(target, "new")
    finally:
        os.umask(old)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == mode


UNFORMATTED = (
    "model:\n  layers: [relu, {linear: {out_features: 2}}]\n  input: {channels: 1, height: 1, width: 1}\nname: x\n"
)


def test_fmt_on_a_symlink_formats_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "specs" / "real.yaml"
    real.parent.mkdir()
    real.write_text(UNFORMATTED)
    real.chmod(0o600)
    link = tmp_path / "link.yaml"
    link.symlink_to(Path("specs") / "real.yaml")
    result = run_cli("fmt", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(Path("specs") / "real.yaml")
    formatted = real.read_text()
    assert formatted != UNFORMATTED and formatted.startswith("name: x\n")
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert run_cli("fmt", "--check", str(real)).exit_code == 0  # the target itself is now canonical


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(NotRegularFileError, match="symlink loop"):
        atomic_write_text(a, "x")
    assert a.is_symlink() and b.is_symlink()


@pytest.mark.parametrize(
    "command",
    [
        lambda out: ("schema", "--out", out),
        lambda out: ("diff", "SPEC", "SPEC", "-o", out),
        lambda out: ("graph", "SPEC", "-o", out),
    ],
    ids=["schema", "diff", "graph"],
)
@pytest.mark.parametrize("name", ["run.json", "spec.yaml", ".cnnspec.lock", "checkpoints/best.safetensors"])
def test_no_command_writes_over_a_runs_own_files(
    tmp_path_factory: pytest.TempPathFactory, command: Callable[[str], tuple[str, ...]], name: str
) -> None:
    run = make_run(tmp_path_factory, "target", TINY_GREY)
    (run / ".cnnspec.lock").touch()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    spec = str(RunPaths(run).spec)
    if command("")[0] == "graph":  # it writes only .svg, .html and .png: the run's own PNG files, then
        name = "curves.png" if name in ("run.json", "spec.yaml") else "samples/x_idx0.png"
    args = [spec if a == "SPEC" else a for a in command(str(run / name))]
    result = run_cli(*args)
    assert result.exit_code == (2 if args[0] == "diff" else 1), result.output  # diff's 1 means "they differ"
    assert f"it is {name} of the cnnspec run {run}" in result.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_quantize_out_over_the_runs_fp32_model_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    run = make_run(tmp_path_factory, "quantized", TINY_GREY)
    assert run_cli("export", str(run)).exit_code == 0
    onnx = RunPaths(run).onnx
    before = onnx.read_bytes()
    result = run_cli("quantize", str(run), "-o", str(onnx), "--seconds", "0")
    assert result.exit_code == 1, result.output
    assert f"refused to write {onnx}: it is model.onnx of the run being exported" in result.stderr
    assert onnx.read_bytes() == before


def test_train_out_under_a_file_names_the_file_not_the_disk(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine", encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_GREY, encoding="utf-8")
    digits = ["--set", "data.dataset.name=synthetic", "--set", "data.dataset.num_classes=3", "--set", "train.epochs=1"]
    result = run_cli("train", str(spec), "--out", str(tmp_path / "afile" / "sub"), "--quiet", *digits)
    assert result.exit_code == 1, result.output
    assert f"{tmp_path / 'afile'} is a file, not a folder" in result.output, result.output
    assert "free disk space" not in result.output
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "mine"
