"""`cnnspec lr-find` refuses what it cannot use before the test runs, and a failed write is one error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnspec.atomic import TMP_PREFIX
from tests.cli_helpers import run_cli
from tests.tracking._helpers import full_disk

SPEC = Path(__file__).resolve().parents[2] / "specs" / "digits.yaml"


@pytest.mark.parametrize(
    ("args", "wrong"),
    [
        (["--max-lr", "inf"], "--max-lr inf"),
        (["--max-lr", "1e308"], "--max-lr 1e+308"),
        (["--min-lr", "1e-300"], "--min-lr 1e-300"),
        (["--min-lr", "nan"], "--min-lr nan"),
        (["--min-lr", "-1"], "--min-lr -1"),
        (["--max-lr", "0"], "--max-lr 0"),
    ],
    ids=["inf", "huge", "tiny", "nan", "negative", "zero"],
)
def test_a_learning_rate_out_of_range_is_refused_before_the_test(tmp_path: Path, args: list[str], wrong: str) -> None:
    refused = run_cli("lr-find", str(SPEC), "--out", str(tmp_path / "out"), *args)
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        f"error: {wrong}: a learning rate of the range test is a finite number from 1e-12 to"
    )
    assert "optimizer.lr" not in refused.stderr
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_is_refused_before_the_test(tmp_path: Path) -> None:
    out = tmp_path / "results.txt"
    out.write_text("mine")
    refused = run_cli("lr-find", str(SPEC), "--out", str(out), "--steps", "20")
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: --out {out}: {out} is a file, not a folder")
    assert out.read_text() == "mine"
    under = run_cli("lr-find", str(SPEC), "--out", str(out / "deeper"), "--steps", "20")
    assert under.exit_code == 1 and under.stderr.startswith(f"error: --out {out / 'deeper'}: {out} is a file")


def test_a_plot_name_taken_by_a_folder_is_refused_before_the_test(tmp_path: Path) -> None:
    (tmp_path / "lr_find.png").mkdir()
    refused = run_cli("lr-find", str(SPEC), "--out", str(tmp_path), "--steps", "20")
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: cannot write {tmp_path / 'lr_find.png'}: it is a directory")


@pytest.mark.slow
def test_a_full_disk_is_one_error_line_and_no_partial_plot(tmp_path: Path) -> None:
    with full_disk(tmp_path / "disk") as disk:
        out = disk / "lrf"
        refused = run_cli(
            "lr-find", str(SPEC), "--out", str(out), "--steps", "20", "--min-lr", "1e-4", "--max-lr", "0.1"
        )
        assert refused.exit_code == 1
        assert refused.stderr.startswith(f"error: cannot write {out / 'lr_find.png'}: No space left on device")
        left = [p.name for p in out.iterdir()] if out.exists() else []
        assert left == []  # no 0-byte lr_find.png, no temporary
        assert not any(name.startswith(TMP_PREFIX) for name in left)
