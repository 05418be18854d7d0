"""benchmarks/train_vs_hand_loop.py keeps running (--dry: 2 epochs, one pair), and what it reports is
what its two runs recorded: cnnspec's result.json and the hand loop's own file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "train_vs_hand_loop.py"


@pytest.mark.slow
def test_the_benchmark_reports_what_its_runs_recorded(tmp_path: Path) -> None:
    work, figures_file = tmp_path / "work", tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry", "--work", str(work), "--json", str(figures_file)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(figures_file.read_text())
    assert figures["epochs"] == 2 and len(figures["pairs"]) == 1
    (pair,) = figures["pairs"]
    cnnspec_run = Path(pair["cnnspec"]["run"])
    recorded = json.loads((cnnspec_run / "result.json").read_text())
    assert recorded["epochs"] == 2
    assert pair["cnnspec"]["test_accuracy"] == recorded["test_accuracy"]
    assert figures["cnnspec_test_accuracy"] == recorded["test_accuracy"]
    hand = json.loads(Path(pair["hand"]["result"]).read_text())
    assert pair["hand"]["test_accuracy"] == figures["hand_test_accuracy"] == hand["test_accuracy"]
    assert pair["ratio"] == pytest.approx(pair["cnnspec"]["seconds"] / pair["hand"]["seconds"], rel=1e-12)
    assert f"median ratio cnnspec ÷ hand: {pair['ratio']:.2f}" in done.stdout
    assert "data.cache: image folder held in memory" in pair["cnnspec"]["cache"]
    # The folder: the digits split, every image a 28×28 PNG.
    assert len(list((work / "digits28" / "train").glob("*/*.png"))) == 1437
    assert len(list((work / "digits28" / "test").glob("*/*.png"))) == 360
