"""Export: the gate, parity with torch at batch 1 and 7, metadata, fp16, static batch, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import cnnspec
from cnnspec.deploy.exporter import ExportReport, export_run
from cnnspec.deploy.gate import FP32_BOUND, run_gate, sample_batch
from cnnspec.deploy.metadata import from_props
from cnnspec.deploy.onnx_export import to_onnx
from cnnspec.errors import ExportError
from cnnspec.rundir.info import read_info
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import save_weights
from tests.cli_helpers import run_cli
from tests.export._export_helpers import TINY_GREY, make_run, torch_logits


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]  # type: ignore[no-any-return]


def assert_matches_torch(report: ExportReport) -> None:
    run = report.path.parent
    meta = report.metadata
    for batch in (1, 7):
        x = sample_batch(meta, batch, seed=100 + batch)
        got, want = ort_logits(report.path, x), torch_logits(run, x)
        assert got.shape == want.shape == (batch, len(meta.class_names))
        assert np.abs(got - want).max() <= FP32_BOUND


def test_digits_export_passes_the_gate_and_matches_torch_at_batch_1_and_7(digits_export: ExportReport) -> None:
    assert digits_export.path.name == "model.onnx" and digits_export.path.is_file()
    assert [p.batch for p in digits_export.parity] == [1, 7]
    assert all(p.max_abs_diff <= p.bound == FP32_BOUND for p in digits_export.parity)
    onnx.checker.check_model(str(digits_export.path), full_check=True)
    assert_matches_torch(digits_export)


def test_small_cnn_export_matches_torch_at_batch_1_and_7(small_cnn_export: ExportReport) -> None:
    assert small_cnn_export.metadata.exporter == "dynamo"
    assert_matches_torch(small_cnn_export)


@pytest.mark.slow
def test_resnet18_export_matches_torch_at_batch_1_and_7(tmp_path_factory: pytest.TempPathFactory) -> None:
    report = export_run(make_run(tmp_path_factory, "resnet18"))
    assert report.bytes > 40e6  # 11.7 M fp32 parameters
    assert_matches_torch(report)


def test_graph_has_stable_names_and_a_dynamic_batch_axis(digits_export: ExportReport) -> None:
    model = onnx.load(str(digits_export.path))
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [1, 8, 8]
    assert {o.domain: o.version for o in model.opset_import}[""] == 18


def test_metadata_describes_preprocessing_classes_and_provenance(small_cnn_export: ExportReport) -> None:
    session = ort.InferenceSession(str(small_cnn_export.path), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    values = {k: json.loads(v) for k, v in props.items()}  # every value is JSON
    info = read_info(small_cnn_export.path.parent)
    assert values["input_shape"] == [3, 32, 32]
    assert values["layout"] == "NCHW"
    assert values["class_names"][:2] == ["airplane", "automobile"]
    assert values["mean"] is None if "mean" in values else True  # small_cnn trains on raw 0–1 pixels
    assert values["spec_name"] == "small-cnn"
    assert values["spec_hash"] == info.spec_hash
    assert values["cnnspec_version"] == cnnspec.__version__
    assert values["pixel_scale"] == 255.0
    assert values["weights_dtype"] == "float32"
    assert values["exporter"] == "dynamo"
    assert "resize" not in values
    assert [b["batch"] for b in values["parity"]["batches"]] == [1, 7]
    assert cnnspec.loads(values["spec"]).name == "small-cnn"  # the resolved spec travels with the file


def test_metadata_keeps_resize_and_normalisation(resized_export: ExportReport) -> None:
    meta = from_props({p.key: p.value for p in onnx.load(str(resized_export.path)).metadata_props}, "x")
    assert meta.resize == [16, 16]
    assert meta.mean == [0.5, 0.4, 0.3] and meta.std == [0.2, 0.25, 0.3]
    assert meta.color == "rgb" and meta.class_names == list("abcde")
    assert_matches_torch(resized_export)


def test_fp16_weights_halve_the_file_and_pass_the_looser_bound(
    small_cnn_export: ExportReport, tmp_path_factory: pytest.TempPathFactory
) -> None:
    spec = (Path(__file__).parents[2] / "specs" / "small_cnn.yaml").read_text()
    fp16_run = make_run(
        tmp_path_factory, "fp16", spec.replace("dynamic_batch: true}", "dynamic_batch: true, fp16: true}")
    )
    fp16 = export_run(fp16_run)
    fp32_bytes = sum(t.ByteSize() for t in onnx.load(str(small_cnn_export.path)).graph.initializer)  # same layers
    model = onnx.load(str(fp16.path))
    assert sum(t.ByteSize() for t in model.graph.initializer) < 0.55 * fp32_bytes
    kinds = {t.data_type for t in model.graph.initializer if len(t.dims) >= 2}
    assert kinds == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # callers still feed fp32
    assert fp16.metadata.weights_dtype == "float16"
    x = sample_batch(fp16.metadata, 7, seed=3)
    want = torch_logits(fp16_run, x)
    diff = np.abs(ort_logits(fp16.path, x) - want).max()
    assert 0 < diff <= 1e-2 * max(1.0, np.abs(want).max())  # rounded weights: not exact, but close


def test_static_batch_and_another_opset_through_the_library_function(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run = make_run(tmp_path_factory, "static", TINY_GREY + "export: {opset: 17, dynamic_batch: false}\n")
    path = cnnspec.export(run)
    assert path == RunPaths(run).onnx
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    meta = from_props({p.key: p.value for p in model.metadata_props}, str(path))
    assert meta.dynamic_batch is False and [b["batch"] for b in meta.parity["batches"]] == [1, 7]  # type: ignore[index]
    x = sample_batch(meta, 1, seed=9)
    assert np.abs(ort_logits(path, x) - torch_logits(run, x)).max() <= FP32_BOUND


def test_non_finite_weights_fail_export_with_exit_1_naming_the_cause_and_write_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run = make_run(tmp_path_factory, "nan", TINY_GREY)
    model = cnnspec.build(cnnspec.loads(TINY_GREY))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))  # what a diverged training run leaves behind
    save_weights(model, RunPaths(run).weights("best"))
    out = run / "exported" / "model.onnx"
    result = run_cli("export", str(run), "--out", str(out))
    assert result.exit_code == 1
    # The gate refuses before comparing: no engine can match NaN, so the figures would only mislead.
    assert "the model's own (torch) outputs are not finite" in result.stderr
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary file left behind


def test_gate_reports_a_model_that_computes_something_else(digits_export: ExportReport) -> None:
    other = cnnspec.build(cnnspec.load(Path(__file__).parents[2] / "specs" / "digits.yaml"))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    with pytest.raises(ExportError) as caught:
        run_gate(digits_export.path, other, digits_export.metadata)
    text = caught.value.format()
    assert "batch 1: max |onnxruntime − torch|" in text and "bound 0.0001" in text


class DataDependent(torch.nn.Module):
    """A branch on a tensor's value: torch.export cannot capture it, TorchScript tracing records one side."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.linear(x.flatten(1))
        return -self.linear(x.flatten(1))


def test_torchscript_exporter_is_the_fallback_when_dynamo_fails(tmp_path: Path) -> None:
    module = DataDependent().eval()
    exported = to_onnx(module, (1, 2, 2), opset=18)
    assert exported.exporter == "torchscript" and exported.dynamo_error
    path = tmp_path / "m.onnx"
    onnx.save(exported.model, str(path))
    x = np.abs(np.random.default_rng(0).standard_normal((5, 1, 2, 2), dtype=np.float32))  # the traced branch
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert np.abs(ort_logits(path, x) - want).max() <= FP32_BOUND


def test_export_cli_reports_the_gate_and_writes_the_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    run = make_run(tmp_path_factory, "cli", TINY_GREY)
    result = run_cli("export", str(run), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert Path(report["path"]) == RunPaths(run).onnx and RunPaths(run).onnx.is_file()
    assert [p["batch"] for p in report["parity"]] == [1, 7]


def test_export_of_a_folder_that_is_not_a_run_exits_1(tmp_path: Path) -> None:
    result = run_cli("export", str(tmp_path))
    assert result.exit_code == 1
    assert "not a cnnspec run directory" in result.stderr
