"""GPU inference that does not lie: `--device cuda` refuses onnxruntime's silent CPU fallback; IOBinding and
cudnn_conv_algo_search in bench (and the session options serve reuses).

onnxruntime-gpu is installed on CPU machines too: asking it for CUDA there really gives a CPU-only
session (onnxruntime#23372), which is what the refusal tests observe. The GPU tests run where a CUDA
device is visible (marked gpu; skipped elsewhere).
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnspec.deploy.bench import bench
from cnnspec.deploy.exporter import ExportReport
from cnnspec.deploy.gate import sample_batch
from cnnspec.deploy.predict import model_metadata
from cnnspec.deploy.session import CPU, CUDA, CudaOptions, IoBound, cuda_device_present, open_session
from cnnspec.errors import ExportError
from tests.cli_helpers import run_cli

no_gpu = pytest.mark.skipif(cuda_device_present(), reason="a CUDA device is visible: nothing falls back here")


@no_gpu
def test_asking_for_cuda_without_a_gpu_is_refused_not_run_on_the_cpu(digits_export: ExportReport) -> None:
    with pytest.raises(ExportError) as caught:
        open_session(digits_export.path, "cuda", cuda=CudaOptions("HEURISTIC"))
    text = caught.value.format()
    assert "CUDAExecutionProvider was requested but onnxruntime fell back to CPUExecutionProvider" in text
    assert len(text.splitlines()) == 1


def test_auto_without_a_working_cuda_provider_reports_the_cpu(digits_export: ExportReport) -> None:
    session = open_session(digits_export.path, "auto")
    assert session.provider == session.session.get_providers()[0]
    assert session.provider == (CUDA if cuda_device_present() else CPU)


def test_cuda_options_name_onnxruntime_s_provider_option() -> None:
    assert CudaOptions("EXHAUSTIVE").provider() == (CUDA, {"cudnn_conv_algo_search": "EXHAUSTIVE"})
    assert CudaOptions().provider() == (CUDA, {})


def test_io_binding_computes_what_session_run_computes(digits_export: ExportReport) -> None:
    session = open_session(digits_export.path, "cpu")
    x = sample_batch(model_metadata(session), 5, seed=3)
    bound = IoBound(session, x)
    bound.run()
    assert np.array_equal(bound.logits(), session.run(x))


def test_bench_with_io_binding_and_conv_algo_on_the_cpu_says_what_it_did(digits_export: ExportReport) -> None:
    result = bench(digits_export.path.parent, [2], device="cpu", min_seconds=0.0, io_binding=True,
                   cuda=CudaOptions("HEURISTIC"))  # fmt: skip
    assert result.rows[0].onnx.iterations >= 5
    assert any("IOBinding" in n for n in result.notes)
    assert any("cudnn_conv_algo_search applies to the CUDA provider only" in n for n in result.notes)


def test_bench_cli_takes_io_binding_and_conv_algo(digits_export: ExportReport) -> None:
    result = run_cli("bench", str(digits_export.path), "--device", "cpu", "--batch", "1", "--seconds", "0",
                     "--io-binding", "--conv-algo", "heuristic")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "note: IOBinding" in result.stderr
    assert run_cli("bench", str(digits_export.path), "--conv-algo", "fastest").exit_code == 2


@pytest.mark.gpu
@pytest.mark.parametrize("search", ["EXHAUSTIVE", "HEURISTIC", "DEFAULT"])
def test_the_cuda_session_runs_on_cuda_with_the_chosen_conv_algo_search(
    digits_export: ExportReport, search: str
) -> None:
    session = open_session(digits_export.path, "cuda", cuda=CudaOptions(search))  # type: ignore[arg-type]
    assert session.session.get_providers()[0] == CUDA
    assert session.session.get_provider_options()[CUDA]["cudnn_conv_algo_search"] == search


@pytest.mark.gpu
def test_io_binding_on_cuda_keeps_the_input_on_the_device(digits_export: ExportReport) -> None:
    session = open_session(digits_export.path, "cuda")
    x = sample_batch(model_metadata(session), 4, seed=1)
    bound = IoBound(session, x)
    assert bound.input.device_name() == "cuda"
    bound.run()
    assert np.allclose(bound.logits(), open_session(digits_export.path, "cpu").run(x), atol=1e-4)
    result = bench(digits_export.path.parent, [1, 64], device="cuda", min_seconds=0.0, io_binding=True,
                   cuda=CudaOptions("HEURISTIC"))  # fmt: skip
    assert result.provider == CUDA and "cudnn_conv_algo_search HEURISTIC" in result.notes
