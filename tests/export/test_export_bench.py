"""bench: torch eager and onnxruntime timed on the same input (structure only: no timing assertions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cnnspec.deploy.bench import BenchResult, BenchRow, Timing, bench, time_calls
from cnnspec.deploy.exporter import ExportReport
from tests.cli_helpers import run_cli
from tests.export._export_helpers import TINY_GREY, make_run


def test_time_calls_counts_its_iterations() -> None:
    calls = []
    timing = time_calls(lambda: calls.append(1), min_seconds=0.0, min_iters=7, warmup=2)
    assert timing.iterations == 7 and len(calls) == 9
    assert 0 <= timing.median_ms <= timing.p90_ms


def test_bench_a_run_times_both_engines_per_batch(digits_export: ExportReport) -> None:
    result = bench(digits_export.path.parent, [1, 3], device="cpu", min_seconds=0.0)
    assert [r.batch for r in result.rows] == [1, 3]
    assert result.device == "cpu" and result.provider == "CPUExecutionProvider"
    for row in result.rows:
        assert row.torch.iterations >= 5 and row.onnx.iterations >= 5
        assert 0 < row.torch.median_ms <= row.torch.p90_ms and 0 < row.onnx.median_ms <= row.onnx.p90_ms
    assert result.notes == []  # RUN/model.onnx exists and the trained weights are used


def test_ratio_and_throughput_by_hand() -> None:
    # torch takes 6 ms for a batch of 8, onnxruntime 2 ms: onnxruntime is 3× faster, and its
    # 8 images per 2 ms are 4,000 images/s (torch: 8 per 6 ms, 1,333.3 images/s).
    row = BenchRow(8, torch=Timing(5, median_ms=6.0, p90_ms=7.0), onnx=Timing(5, median_ms=2.0, p90_ms=2.5))
    assert row.ratio == pytest.approx(3.0)
    assert row.onnx.images_per_second(8) == pytest.approx(4000.0)
    assert row.torch.images_per_second(8) == pytest.approx(4000.0 / 3)
    rows = BenchResult("m", "m.onnx", "cpu", "CPUExecutionProvider", 1, [row]).to_json()["rows"]
    assert rows[0]["ratio"] == pytest.approx(3.0)
    assert rows[0]["onnxruntime"]["images_per_second"] == pytest.approx(4000.0)
    assert rows[0]["torch_eager"] == pytest.approx(
        {"iterations": 5, "median_ms": 6.0, "p90_ms": 7.0, "images_per_second": 4000.0 / 3}
    )


def test_bench_an_onnx_file_outside_its_run_rebuilds_torch_from_the_embedded_spec(
    digits_export: ExportReport, tmp_path: Path
) -> None:
    copy = tmp_path / "digits.onnx"
    shutil.copy(digits_export.path, copy)
    result = bench(copy, [2], device="cpu", min_seconds=0.0)
    assert result.name == "digits-cnn" and result.rows[0].batch == 2
    assert any("embedded" in n for n in result.notes)


def test_bench_a_run_without_model_onnx_exports_to_a_temporary_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    run = make_run(tmp_path_factory, "bench", TINY_GREY)
    result = bench(run, [1], device="cpu", min_seconds=0.0)
    assert any("temporary" in n for n in result.notes)
    assert not (run / "model.onnx").exists()


def test_bench_cli_json_and_text(digits_export: ExportReport) -> None:
    run = str(digits_export.path.parent)
    result = run_cli("bench", run, "--batch", "1,2", "--seconds", "0", "--device", "cpu", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["batch"] for r in data["rows"]] == [1, 2]
    assert {"median_ms", "p90_ms", "images_per_second"} <= set(data["rows"][0]["onnxruntime"])
    assert data["rows"][0]["ratio"] > 0
    text = run_cli("bench", run, "--batch", "1", "--seconds", "0", "--device", "cpu")
    assert text.exit_code == 0 and "torch eager" in text.stdout and "ORT ÷ torch" in text.stdout


@pytest.mark.parametrize("batches", ["0", "1,x", ""])
def test_bench_rejects_bad_batch_sizes_as_usage_errors(digits_export: ExportReport, batches: str) -> None:
    result = run_cli("bench", str(digits_export.path), "--batch", batches)
    assert result.exit_code == 2


def test_bench_of_something_else_exits_1(tmp_path: Path) -> None:
    result = run_cli("bench", str(tmp_path / "nothing.onnx"))
    assert result.exit_code == 1 and "neither a run directory nor an ONNX file" in result.stderr


@pytest.mark.gpu
def test_bench_on_a_gpu_compares_the_cuda_provider_with_torch_on_cuda(digits_export: ExportReport) -> None:
    result = bench(digits_export.path.parent, [1, 64], device="cuda", min_seconds=0.0)
    assert result.device == "cuda" and result.provider == "CUDAExecutionProvider"
    assert [r.batch for r in result.rows] == [1, 64]
