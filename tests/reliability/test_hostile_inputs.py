"""Hostile inputs of issue 14 ("nothing lost, nothing silently wrong"), findings D and I-O: a spec that
is a pipe, splits that share images, normalisation and hyper-parameters at the edge of float32,
augmentation padding the memory estimate missed, bench batches and plot formats nobody can serve.

Each test reproduces the attack (/tmp/attack14/log.md) with real files, pipes, processes and
signals, and prints one `RELIABILITY` line (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnspec
from cnnspec.checker.checker import check
from cnnspec.checker.data import check_data
from cnnspec.deploy.bench import MAX_BATCH, batch_memory, ensure_batches_fit
from cnnspec.deploy.images import image_files
from cnnspec.deploy.metadata import ModelMetadata
from cnnspec.errors import CheckpointError, DataError, ExportError, SpecError
from cnnspec.rundir.info import read_info
from cnnspec.rundir.paths import RunPaths
from cnnspec.spec.load import loads
from cnnspec.spec.source import read_spec_text
from cnnspec.training.memory import training_parts
from tests.reliability._reliability_helpers import TINY, assert_refused, child_env, cli, report

CNNSPEC = [sys.executable, "-m", "cnnspec"]
# A generous bound for a child that must end (a hang is the failure): a start-up with torch on 2 busy cores.
END_SECONDS = 120


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CNNSPEC, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=END_SECONDS,
        env=child_env(),
        errors="backslashreplace",
        **kwargs,  # type: ignore[call-overload]
    )


@contextmanager
def _pipe_holding(text: str) -> Iterator[int]:
    """The read end of an anonymous pipe holding `text`, its write end closed: what `<(cat spec.yaml)`
    gives a command (a /dev/fd/N path)."""
    read, write = os.pipe()
    os.write(write, text.encode())
    os.close(write)
    try:
        yield read
    finally:
        os.close(read)


# --- D: a spec that is a pipe ---------------------------------------------------------------------


def test_a_fifo_with_no_writer_is_refused_after_the_wait(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match=r"nothing to read from .*spec.yaml: a pipe that sent nothing for 0.2 s"):
        read_spec_text(fifo, pipe_wait=0.2)  # was: open() blocked forever
    report("hostile spec path", fifo="no writer", outcome="refused after the wait")


def test_validate_and_train_read_a_spec_through_a_pipe(tmp_path: Path) -> None:
    """`cnnspec validate <(...)` works, and train reads the pipe once: its record is the spec itself
    (train read the path twice, and a pipe gives its text once: the record came out empty)."""
    with _pipe_holding(TINY) as fd:
        checked = _run("validate", f"/dev/fd/{fd}", pass_fds=(fd,))
    assert checked.returncode == 0, checked.stderr
    assert f"/dev/fd/{fd}: ok (7 layers" in checked.stdout
    out = tmp_path / "run"
    with _pipe_holding(TINY) as fd:
        cnnspec.train(f"/dev/fd/{fd}", out=out, progress=False)
    assert RunPaths(out).spec.read_text(encoding="utf-8") == TINY  # the text as written, comments and all
    report("hostile spec path", pipe="validate and train", outcome="read once, recorded as written")


def test_fmt_refuses_to_rewrite_a_pipe(tmp_path: Path) -> None:
    untidy = TINY.replace("name: tiny", "name:    tiny")
    with _pipe_holding(untidy) as fd:
        result = _run("fmt", f"/dev/fd/{fd}", pass_fds=(fd,))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"/dev/fd/{fd}: error: cannot reformat /dev/fd/{fd} in place: it is a pipe" in result.stderr
    with _pipe_holding(untidy) as fd:
        checked = _run("fmt", "--check", f"/dev/fd/{fd}", pass_fds=(fd,))
    assert checked.returncode == 1 and f"would reformat /dev/fd/{fd}" in checked.stderr, checked.stderr
    report("hostile spec path", pipe="fmt", outcome="in place refused, --check reads it")


@pytest.mark.parametrize(
    ("command", "sig", "code"),
    [("validate", signal.SIGINT, 130), ("train", signal.SIGTERM, -signal.SIGTERM)],
    ids=["validate-SIGINT", "train-SIGTERM"],
)
def test_a_signal_ends_a_wait_on_a_spec_fifo(tmp_path: Path, command: str, sig: signal.Signals, code: int) -> None:
    """The writer is there but sends nothing: the command waits, and Ctrl-C or SIGTERM ends it at once
    (train routed both to its stop-after-this-step flag and kept waiting: 'SIGTERM does not end it')."""
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    out = tmp_path / "run"
    args = [*CNNSPEC, command, str(fifo)] + (["--out", str(out)] if command == "train" else [])
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    writer = None
    try:
        while writer is None:  # opening the write end succeeds once the child has opened the FIFO to read
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                if child.poll() is not None:
                    break
                threading.Event().wait(0.05)
        child.send_signal(sig)
        _, stderr = child.communicate(timeout=END_SECONDS)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if writer is not None:
            os.close(writer)
    assert child.returncode == code, stderr
    assert "Traceback" not in stderr
    if sig == signal.SIGINT:
        assert stderr.strip().endswith("interrupted"), stderr
    assert not out.exists()
    report("hostile spec path", fifo=f"{command} waiting", signal=sig.name, outcome=f"exit {code}")


def test_devices_and_folders_are_refused_as_specs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a folder, not a spec file"):
        read_spec_text(tmp_path)
    if os.path.exists("/dev/null"):
        with pytest.raises(SpecError, match="/dev/null is a character device, not a spec file"):
            read_spec_text("/dev/null")
    report("hostile spec path", device="/dev/null, a folder", outcome="refused by what it is")


# --- L: one image in two splits -------------------------------------------------------------------


def _folder_spec(tmp_path: Path, root: Path) -> Path:
    spec = tmp_path / "folder.yaml"
    spec.write_text(
        "name: leak\nmodel:\n  input: {channels: 1, height: 8, width: 8}\n  layers:\n    - flatten\n"
        "    - linear: {out_features: 2}\n"
        f"data:\n  dataset: {{name: image_folder, root: '{root}'}}\n  batch_size: 4\n  val_split: 0\n"
        "  num_workers: 0\n  resize: 8\ntrain: {epochs: 1}\n",
        encoding="utf-8",
    )
    return spec


def _images(folder: Path, n: int, value: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8), value + i, np.uint8)).save(folder / f"{i}.png")


def test_a_test_split_linked_to_the_training_folders_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for name, value in (("cat", 10), ("dog", 200)):
        _images(root / "train" / name, 3, value)
        (root / "test").mkdir(exist_ok=True)
        (root / "test" / name).symlink_to(Path("..") / "train" / name)
    out = tmp_path / "run"
    with pytest.raises(DataError) as caught:
        cnnspec.train(_folder_spec(tmp_path, root), out=out, progress=False)  # was: test accuracy 1.0
    text = str(caught.value)
    assert f"the same images are in train and test: {root}/test/cat is the folder {root}/train/cat" in text
    assert f"{root}/test/dog is the folder {root}/train/dog" in text
    assert not out.exists()
    report("hostile image folder", test="class folders linked to train", outcome="refused, both paths named")


def test_one_image_file_in_two_splits_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for name, value in (("cat", 10), ("dog", 200)):
        _images(root / "train" / name, 3, value)
        _images(root / "test" / name, 2, value + 50)
    os.link(root / "train" / "cat" / "1.png", root / "test" / "cat" / "hard.png")  # a hard link: same inode
    (root / "test" / "dog" / "soft.png").symlink_to(root / "train" / "dog" / "2.png")
    with pytest.raises(DataError) as caught:
        cnnspec.train(_folder_spec(tmp_path, root), out=tmp_path / "run", progress=False)
    text = str(caught.value)
    assert (
        f"the same image is in train and test: {root}/train/cat/1.png and {root}/test/cat/hard.png are one file"
    ) in text
    assert f"{root}/train/dog/2.png and {root}/test/dog/soft.png are one file" in text
    assert text.count("error:") == 2  # the other test images are the split's own
    report("hostile image folder", test="a hard link and a link to train images", outcome="refused, both named")


# --- O: normalisation that makes every output NaN ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("std", 1e-300, "std[0]: input should be greater than or equal to 0.001, got 1e-300"),
        ("std", 1e300, "std[0]: input should be less than or equal to 1000, got 1e+300"),
        ("mean", 1e300, "mean[0]: input should be less than or equal to 1000, got 1e+300"),
    ],
)
def test_run_json_normalisation_out_of_range_is_refused(
    copy_run: Callable[[str], Path], key: str, value: float, message: str
) -> None:
    run = copy_run("run")
    info = RunPaths(run).info
    data = json.loads(info.read_text(encoding="utf-8"))
    data[key] = [value]
    info.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CheckpointError, match=re.escape(message)):
        read_info(run)  # was accepted: evaluate said 'accuracy 0.1000 loss nan', exit 0
    report("hostile run.json", **{key: value}, outcome="refused naming the field")


def test_evaluate_refuses_a_run_json_std_of_1e_300(copy_run: Callable[[str], Path]) -> None:
    run = copy_run("run")
    info = RunPaths(run).info
    data = json.loads(info.read_text(encoding="utf-8"))
    data["std"] = [1e-300]
    info.write_text(json.dumps(data), encoding="utf-8")
    result = cli("evaluate", run)
    assert_refused(result, f"{info}: error: std[0]: input should be greater than or equal to 0.001")
    assert not (run / "evaluation.json").exists()
    report("hostile run.json", std=1e-300, command="evaluate", outcome="exit 1, nothing written")


# --- I, J, K: hyper-parameters past float32 and padding past memory -------------------------------


def test_validate_refuses_values_that_broke_training_with_a_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY, encoding="utf-8")
    overrides = [
        "schedule.warmup_epochs=1e308",  # OverflowError in the schedule
        "data.augment=[{mixup: {alpha: 1e-300}}, {random_crop: {size: 8, padding: 100000}}]",  # Dirichlet, 2.5 TB
        "data.normalize={mean: [0.5], std: [1e-300]}",
    ]
    result = _run("validate", spec, *[a for o in overrides for a in ("--set", o)])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout
    for message in (
        "schedule.warmup_epochs should be less than or equal to 10000, got 1e+308",
        "data.augment[0].mixup.alpha should be greater than or equal to 0.001, got 1e-300",
        "data.augment[1].random_crop.padding should be less than or equal to 1024, got 100000",
        "data.normalize.std[0] should be greater than or equal to 0.001, got 1e-300",
    ):
        assert message in result.stdout + result.stderr, result.stdout + result.stderr
    # torch's reflect padding needs padding < the image side: was a RuntimeError inside training.
    reflect = loads(TINY.replace("size: 8, padding: 1}", "size: 8, padding: 8, padding_mode: reflect}"), "r.yaml")
    (problem,) = check_data(reflect)
    assert problem.message == "random_crop's reflect padding of 8 needs an image wider and taller than that, got 8×8"
    assert problem.location is not None and (problem.location.line, problem.location.col) == (17, 39)
    report("hostile hyper-parameters", warmup=1e308, alpha=1e-300, padding=100000, outcome="located errors")


def test_the_memory_estimate_counts_random_crop_padding(tmp_path: Path) -> None:
    """2 × 1024 pixels of padding around an 8×8 image: the padded uint8 batch is what training allocates."""
    text = TINY.replace("size: 8, padding: 1}", "size: 8, padding: 1024}").replace(
        "batch_size: 16", "batch_size: 1000000"
    )
    spec = loads(text)
    parts = {p.what.split(":")[0]: p.bytes for p in training_parts(spec, check(spec), torch.device("cpu"))}
    # Hand arithmetic: (8 + 2·1024)² padded pixels and the 8×8 crop, one channel, one byte each, × the batch.
    assert parts["augmentation"] == 1_000_000 * (2056 * 2056 + 8 * 8)
    path = tmp_path / "pad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match="most of it is augmentation") as caught:
        cnnspec.train(path, out=tmp_path / "run", progress=False)  # was: 2.5 TB allocated inside training
    assert f"{path}:17:" in str(caught.value) and not (tmp_path / "run").exists()
    report("hostile hyper-parameters", padding=1024, batch=1_000_000, outcome="refused before allocating")


# --- M: bench batches -----------------------------------------------------------------------------


def test_bench_refuses_a_batch_past_the_bound(trained_run: Path) -> None:
    result = cli("bench", trained_run, "--batch", "1,100000000000", "--device", "cpu")  # was numpy's 5.82 TiB
    assert_refused(result, f"batch size 100,000,000,000 is over the largest bench runs, {MAX_BATCH:,}")
    report("hostile bench", batch=100_000_000_000, outcome="refused")


def test_bench_refuses_a_batch_that_does_not_fit_in_memory() -> None:
    meta = ModelMetadata(input_shape=[3, 4096, 4096], class_names=["a", "b"])
    # Hand arithmetic per image: the uint8 image, the float32 input twice, and each engine's input and logits.
    per_image = 3 * 4096 * 4096 * (1 + 8 + 8) + 2 * 4 * 2
    assert batch_memory(meta, None, 10) == 10 * per_image
    with pytest.raises(ExportError, match=f"a batch of {MAX_BATCH:,} needs an estimated"):
        ensure_batches_fit(meta, None, [1, MAX_BATCH], Path("big.onnx"))  # 56 TiB
    report("hostile bench", batch=MAX_BATCH, input="3×4096×4096", outcome="refused before allocating")


# --- N and the minor findings ---------------------------------------------------------------------


def test_summary_plot_refuses_an_extension_matplotlib_cannot_write(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY, encoding="utf-8")
    target = tmp_path / "best.safetensors"
    result = _run("summary", spec, "--plot", target)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{target}: error: --plot cannot write .safetensors files" in result.stderr
    assert ".png" in result.stderr and ".svg" in result.stderr
    assert result.stdout == "" and not target.exists()  # before any work
    report("hostile plot path", extension=".safetensors", outcome="refused with the formats there are")


def test_predict_names_a_fifo_for_what_it_is(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"fifo.png is a FIFO \(named pipe\), not an image file"):
        image_files([fifo])  # was: 'no such file or folder'
    report("hostile predict input", image="a FIFO", outcome="named as one")


def test_evaluate_on_a_missing_split_names_the_one_there_is(trained_run: Path) -> None:
    with pytest.raises(DataError) as caught:
        cnnspec.evaluate_run(trained_run, split="val")  # TINY: val_split 0
    hint = caught.value.diagnostics[0].hint or ""
    assert "data.val_split 0" in hint and "--split test" in hint and "--split val" not in hint, hint
    report("hostile evaluate", split="val (none held out)", outcome="hint names --split test")
