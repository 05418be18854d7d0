"""benchmarks/train_throughput.py keeps running: a tiny configuration, both sides, real figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


@pytest.mark.slow
def test_throughput_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.main(
        ["--images", "256", "--epochs", "2", "--data-batches", "2", "--workers", "0", "--device", "cpu"]
    )
    for key in ("baseline_train", "cnnspec_train", "baseline_data", "cnnspec_data"):
        assert figures[f"{key}_images_per_second"] > 0
    assert figures["train_ratio"] > 0 and figures["data_ratio"] > 0
    out = capsys.readouterr().out
    assert "training, cnnspec train" in out and "data path, baseline DataLoader" in out
