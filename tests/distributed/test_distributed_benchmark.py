"""benchmarks/distributed_throughput.py keeps running: a tiny configuration, both sides, real figures."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "distributed_throughput.py"


@pytest.mark.slow
def test_distributed_benchmark_reports_the_figures_its_runs_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("distributed_throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.main(
        ["--images", "256", "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--keep", str(tmp_path)]
    )
    # The expected figures come from the run directories the script kept, read here: result.json says how
    # many processes trained, metrics.jsonl the images/s of each epoch (epoch 1, the warm-up, is not counted).
    recorded = {}
    for nproc in (1, 2):
        run = tmp_path / f"1-{nproc}proc"
        assert json.loads((run / "result.json").read_text())["processes"] == nproc
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [m["epoch"] for m in metrics] == [1, 2]
        recorded[nproc] = metrics[1]["images_per_second"]
    assert figures["one_process_images_per_second"] == pytest.approx(recorded[1], rel=1e-12)
    assert figures["n_process_images_per_second"] == pytest.approx(recorded[2], rel=1e-12)
    assert figures["nproc"] == 2
    assert figures["ratio"] == pytest.approx(recorded[2] / recorded[1], rel=1e-12)
    out = capsys.readouterr().out
    assert "training, 2 processes (DDP)" in out
    printed = re.search(r"^ratio 2 ÷ 1: +([0-9.]+)×$", out, re.M)
    assert printed is not None, out
    assert float(printed.group(1)) == pytest.approx(recorded[2] / recorded[1], abs=0.005)  # printed to 2 decimals
