"""`cnnspec runs` and `runs compare` against damaged records, odd paths and a full disk (real runs, real files)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from cnnspec.atomic import TMP_PREFIX
from cnnspec.tracking.runs import list_runs
from tests.cli_helpers import run_cli
from tests.tracking._helpers import full_disk, records, spec_file, train


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-runs")
    return train(spec_file(folder / "specs"), folder / "base")


def _copy(base: Path, folder: Path, name: str) -> Path:
    run = folder / name
    shutil.copytree(base, run)
    return run


def _with_metrics(base: Path, folder: Path, name: str, text: str | bytes) -> Path:
    run = _copy(base, folder, name)
    path = run / "metrics.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return run


def test_an_accuracy_above_one_is_damaged_and_never_sorts_first(base: Path, tmp_path: Path) -> None:
    good = _copy(base, tmp_path, "good")
    (record,) = records(base)
    _with_metrics(base, tmp_path, "high", json.dumps({**record, "val_accuracy": 1.7}) + "\n")
    rows = list_runs([tmp_path], sort="best_val_accuracy")
    assert [Path(r.run).name for r in rows] == ["good", "high"]
    high = rows[1]
    assert high.status == "damaged" and high.best_val_accuracy is None and high.test_accuracy is None
    assert (
        high.problem == f"{tmp_path / 'high' / 'metrics.jsonl'}: line 1: val_accuracy is 1.7, not a fraction in [0, 1]"
    )
    assert rows[0].status == "done" and rows[0].best_val_accuracy == record["val_accuracy"]
    text = run_cli("runs", str(tmp_path)).stdout
    assert "1.7000" not in text
    assert f"{tmp_path / 'high'}: damaged: {tmp_path / 'high' / 'metrics.jsonl'}: line 1: val_accuracy is 1.7" in text
    assert good.is_dir()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("garbage\n", "line 1 is not JSON"),
        (random.Random(0).randbytes(300), "not UTF-8 text"),
        ('{"epoch": 1, "train_loss": NaN}\n', "line 1: train_loss is nan, not a finite number"),
        ('{"epoch": "1"}\n', 'line 1: epoch is "1", not a whole number from 1'),
        ("[1, 2]\n", "line 1: a JSON list, not an epoch record"),
    ],
    ids=["garbage", "random-bytes", "nan-loss", "string-epoch", "list"],
)
def test_a_damaged_metrics_log_is_a_damaged_row_naming_it(base: Path, tmp_path: Path, content: str, why: str) -> None:
    _with_metrics(base, tmp_path, "run", content)
    (row,) = list_runs([tmp_path])
    assert row.status == "damaged"
    assert row.problem is not None and row.problem.startswith(f"{tmp_path / 'run' / 'metrics.jsonl'}: {why}")
    assert (row.epochs, row.best_val_accuracy, row.test_accuracy, row.wall_seconds) == (None, None, None, None)


@pytest.mark.parametrize(
    ("result", "why"),
    [
        ({"test_accuracy": "0.9", "epochs": 1}, 'test_accuracy is "0.9", not a fraction in [0, 1]'),
        ({"test_accuracy": 0.9, "epochs": "1"}, 'epochs is "1", not a whole number'),
        ({"wall_seconds": -3, "epochs": 1}, "wall_seconds is -3, not a finite number from 0"),
        ({"device": 7}, "device is 7, not text"),
        ([0.9], "a JSON list, not an object"),
    ],
    ids=["string-accuracy", "string-epochs", "negative-wall", "number-device", "list"],
)
def test_a_wrong_typed_result_is_a_damaged_row(base: Path, tmp_path: Path, result: object, why: str) -> None:
    run = _copy(base, tmp_path, "run")
    (run / "result.json").write_text(json.dumps(result))
    (row,) = list_runs([tmp_path])
    assert (row.status, row.problem) == ("damaged", f"{run / 'result.json'}: {why}")
    assert row.test_accuracy is None and row.wall_seconds is None and row.device is None


def test_a_result_that_is_not_json_is_damaged_not_partial(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path, "run")
    (run / "result.json").write_text('{"test_accuracy": 0.9')
    (row,) = list_runs([tmp_path])
    assert row.status == "damaged"
    assert row.problem is not None and row.problem.startswith(f"{run / 'result.json'}: not valid JSON")


def test_runs_of_a_file_or_a_fifo_says_what_it_is(tmp_path: Path) -> None:
    file, fifo = tmp_path / "notes.txt", tmp_path / "pipe"
    file.write_text("not a folder")
    os.mkfifo(fifo)
    for path, what in ((file, "a file"), (fifo, "a FIFO (named pipe)")):
        refused = run_cli("runs", str(path))
        assert refused.exit_code == 1
        assert refused.stderr.startswith(f"error: {path} is {what}, not a folder")
    assert run_cli("runs", str(tmp_path / "missing")).stderr.startswith(
        f"error: {tmp_path / 'missing'}: no such folder"
    )


def test_a_fifo_spec_is_named_as_a_fifo(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path, "run")
    (run / "spec.yaml").unlink()
    os.mkfifo(run / "spec.yaml")
    (row,) = list_runs([tmp_path])
    assert row.status == "unreadable"
    assert (
        row.problem == f"{run / 'spec.yaml'} is a FIFO (named pipe), not a regular file: the run's spec cannot be read"
    )


def test_compare_refuses_one_run_twice(base: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(base, target_is_directory=True)
    for other in (base, tmp_path / "link"):
        refused = run_cli("runs", "compare", str(base), str(other))
        assert refused.exit_code == 1
        assert refused.stderr.startswith(f"error: runs compare names the run {base} twice")


def test_compare_refuses_a_damaged_run(base: Path, tmp_path: Path) -> None:
    high = _with_metrics(base, tmp_path, "high", '{"epoch": 1, "val_accuracy": 1.7}\n')
    refused = run_cli("runs", "compare", str(base), str(high))
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: {high} is damaged: {high / 'metrics.jsonl'}: line 1: val_accuracy is 1.7")


def test_compare_plot_on_a_full_disk_is_one_error_and_no_file(base: Path, tmp_path: Path) -> None:
    other = _copy(base, tmp_path, "other")
    with full_disk(tmp_path / "disk") as disk:
        refused = run_cli("runs", "compare", str(base), str(other), "-o", str(disk / "cmp.png"))
        assert refused.exit_code == 1
        assert refused.stderr.startswith(f"error: cannot write {disk / 'cmp.png'}: No space left on device")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no partial PNG, no temporary
        assert not any(p.name.startswith(TMP_PREFIX) for p in disk.iterdir())
