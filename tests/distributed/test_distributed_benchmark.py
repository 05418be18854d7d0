"""benchmarks/distributed_throughput.py keeps running: a tiny configuration, both sides, real figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "distributed_throughput.py"


@pytest.mark.slow
def test_distributed_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("distributed_throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The script itself checks that result.json records 1 and 2 processes.
    figures = module.main(["--images", "256", "--epochs", "2", "--batch-size", "32", "--device", "cpu"])
    assert figures["one_process_images_per_second"] > 0 and figures["n_process_images_per_second"] > 0
    assert figures["ratio"] == figures["n_process_images_per_second"] / figures["one_process_images_per_second"]
    out = capsys.readouterr().out
    assert "training, 2 processes (DDP)" in out and "ratio 2 ÷ 1" in out
