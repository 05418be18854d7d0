"""cnnspec quantize: static INT8 of a trained digits run and a ResNet-18-class run, measured against fp32.

The digits run is trained for real (3 epochs of a small CNN, a few seconds); its INT8 model must give
fp32's class on >= 99% of the 360 test images. Measured over training seeds 0–7 (256 calibration
images): agreement 99.72–100%, accuracy drop 0–0.28 points. No timing is asserted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch

from cnnspec.deploy.bench import Timing, bench
from cnnspec.deploy.exporter import export_run
from cnnspec.deploy.metadata import from_props, read_props
from cnnspec.deploy.predict import predict
from cnnspec.deploy.quantize import INT8_FLAGS, CpuInfo, QuantizeReport, SpeedRow, cpu_info, quantize_run, verdict
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.reader import load_trained
from cnnspec.rundir.untrained import init_run
from cnnspec.rundir.weights import save_weights
from cnnspec.spec.load import loads
from cnnspec.spec.overrides import load_with_overrides
from cnnspec.training.api import train
from tests.cli_helpers import run_cli
from tests.export._export_helpers import SPECS

DIGITS_TINY = """
name: digits-tiny
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 16, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - conv2d: {out_channels: 32, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - maxpool2d: {kernel_size: 2}
    - flatten
    - linear: {out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 64
  val_split: 0.1
optimizer: {name: adamw, lr: 1.0e-2}
schedule: {name: cosine}
train: {epochs: 3, seed: 0}
"""


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quantize")
    run = train(loads(DIGITS_TINY, file="<digits-tiny>"), out=folder / "run", progress=False)
    export_run(run)
    return run


@pytest.fixture(scope="module")
def digits_int8(digits_run: Path) -> QuantizeReport:
    return quantize_run(digits_run, batches=[1, 4], seconds=0.0)


def test_int8_agrees_with_fp32_on_99_percent_of_the_digits_test_images(digits_int8: QuantizeReport) -> None:
    r = digits_int8
    assert r.test_images == 360
    assert r.agreement >= 0.99  # measured 99.72–100% over 8 training seeds
    assert r.fp32_accuracy > 0.9  # a trained model, not chance (measured 96.1–98.3%)
    assert r.written and r.path.is_file() and r.path.name == "model.int8.onnx"
    assert r.drop <= r.max_drop == 1.0


def test_the_int8_file_carries_the_fp32_metadata_and_the_quantization_settings(
    digits_run: Path, digits_int8: QuantizeReport
) -> None:
    fp32 = from_props(read_props(onnx.load(str(digits_run / "model.onnx")), "fp32"), "fp32")
    int8_model = onnx.load(str(digits_int8.path))
    int8 = from_props(read_props(int8_model, "int8"), "int8")
    assert int8.weights_dtype == "int8" and int8.parity is None
    for key in ("input_shape", "class_names", "mean", "std", "spec_hash", "spec", "preprocessing", "dataset"):
        assert getattr(int8, key) == getattr(fp32, key), key
    q = int8.quantization
    assert q is not None
    assert q["calibration_images"] == 256 and q["method"] == "MinMax" and q["format"] == "QDQ"
    assert q["per_channel"] is True and "Conv" in q["ops"] and "Gemm" in q["ops"]
    assert q["agreement"] == digits_int8.agreement
    ops = {n.op_type for n in int8_model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ, as recorded


def test_predict_and_bench_take_the_int8_model(digits_int8: QuantizeReport, tmp_path: Path) -> None:
    from PIL import Image

    from cnnspec.training.datasets import digits_arrays

    (_, _), (test_x, test_y), _ = digits_arrays()
    for i in range(8):
        folder = tmp_path / str(int(test_y[i]))
        folder.mkdir(exist_ok=True)
        Image.fromarray(test_x[i, 0].numpy(), mode="L").save(folder / f"{i}.png")
    result = predict(digits_int8.path, [tmp_path], device="cpu")
    assert len(result.predictions) == 8 and result.evaluation is not None
    timed = bench(digits_int8.path, [2], device="cpu", min_seconds=0.0)
    assert timed.rows[0].batch == 2 and timed.notes == []  # beside its run (same spec_hash): the run's weights


def _margins_below_int8(run: Path, out: Path) -> Path:
    """A copy of `run` whose head computes the same classes in fp32 with margins int8 cannot hold: each row
    of the last linear layer becomes c + ε·row (c = 0.05, ε = 1e-4). Adding the same row to every class
    adds the same number to every logit, so fp32's argmax is the trained one; per-channel int8 gives a
    row a step of max|row|/127 ≈ 4e-4, more than the ε·row that tells the classes apart, so INT8 loses
    them (and the logits' own int8 range, wide from c, loses the rest)."""
    copy = Path(shutil.copytree(run, out, ignore=shutil.ignore_patterns("*.onnx", ".cnnspec.lock")))
    model = load_trained(copy).model
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.copy_(0.05 + 1e-4 * head.weight)
        head.bias.mul_(1e-4)
    for which in ("best", "last"):
        save_weights(model, RunPaths(copy).weights(which), run=copy)
    export_run(copy)
    return copy


def test_quantize_refuses_an_int8_model_that_loses_accuracy_and_writes_nothing(
    digits_run: Path, tmp_path: Path
) -> None:
    run = _margins_below_int8(digits_run, tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())
    result = run_cli("quantize", str(run), "--max-drop", "0", "--seconds", "0", "--batch", "1")
    assert result.exit_code == 1
    assert "error: not written: INT8 loses" in result.stderr and "more than --max-drop 0" in result.stderr
    assert "test accuracy (360 images)" in result.stdout  # the figures are still shown
    assert not (run / "model.int8.onnx").exists() and sorted(p.name for p in run.iterdir()) == before
    report = quantize_run(run, max_drop=100.0, out=tmp_path / "lossy.onnx", batches=[1], seconds=0.0)
    assert report.fp32_accuracy > 0.9 and report.drop > 50  # fp32 keeps the classes, INT8 loses them


def test_quantize_json_reports_both_models_side_by_side(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.int8.onnx"
    result = run_cli("quantize", str(digits_run), "-n", "32", "--out", str(out), "--seconds", "0", "--batch",
                     "1,3", "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["written"] is True and data["int8"] == str(out) and out.is_file()
    assert data["settings"]["calibration_images"] == 32
    assert [r["batch"] for r in data["speed"]] == [1, 3]
    for row in data["speed"]:
        assert row["fp32"]["images_per_second"] > 0 and row["int8"]["images_per_second"] > 0
        assert row["speedup"] == pytest.approx(row["fp32"]["median_ms"] / row["int8"]["median_ms"])
    assert 0 < data["int8_bytes"] < data["fp32_bytes"]


@pytest.mark.slow
def test_a_resnet18_class_run_quantizes_and_reports(tmp_path: Path) -> None:
    spec = load_with_overrides(
        SPECS / "resnet18.yaml",
        ["model.input.height=32", "model.input.width=32", "model.layers.10.linear.out_features=10",
         "data.dataset.name=synthetic", "data.dataset.num_samples=40", "data.val_split=0"],
    )  # fmt: skip
    run = init_run(spec, tmp_path / "resnet18")  # no model.onnx yet: quantize exports it first
    report = quantize_run(run, calibration=4, max_drop=100.0, batches=[1], seconds=0.0)
    assert (run / "model.onnx").is_file() and any("exported the run first" in n for n in report.notes)
    assert report.written and report.test_images == 10
    assert {"Conv", "Add", "Gemm"} <= set(report.settings["ops"])
    assert report.int8_bytes < report.fp32_bytes / 3  # int8 weights: about a quarter of the bytes
    assert len(report.verdict) == 1 and report.verdict[0].startswith("batch 1: INT8 is")


def test_cpu_info_reads_the_name_and_int8_flags(tmp_path: Path) -> None:
    text = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx2 avx512_vnni amx_tile\n"
    (tmp_path / "cpuinfo").write_text(text)
    assert cpu_info(tmp_path / "cpuinfo") == CpuInfo("Some CPU", ["avx512_vnni"])
    assert cpu_info(tmp_path / "missing") == CpuInfo("unknown CPU", [])
    here = cpu_info()
    assert set(here.flags) <= set(INT8_FLAGS)


def test_the_verdict_says_why_int8_is_not_faster() -> None:
    slow = SpeedRow(1, fp32=Timing(5, 1.0, 1.0), int8=Timing(5, 1.0, 1.0))
    fast = SpeedRow(64, fp32=Timing(5, 3.0, 3.0), int8=Timing(5, 1.0, 1.0))
    lines = verdict([slow, fast], CpuInfo("x", []), macs=1_000_000)
    assert lines[0].startswith("batch 1: INT8 is not faster than fp32 on this CPU (1.00×)")
    assert "no int8 dot-product instructions" in lines[0] and "the model is small (1 M" in lines[0]
    assert lines[1] == "batch 64: INT8 is 3.00× as fast as fp32"
    unknown = verdict([slow], CpuInfo("x", ["avx512_vnni"]), macs=10**9)
    assert unknown == ["batch 1: INT8 is not faster than fp32 on this CPU (1.00×): cnnspec cannot tell why"]


def test_quantize_bad_options_exit_1_or_2(digits_run: Path) -> None:
    assert run_cli("quantize", str(digits_run), "--max-drop", "-1").exit_code == 2
    assert run_cli("quantize", str(digits_run), "--calibration", "0").exit_code == 2
    result = run_cli("quantize", str(digits_run / "spec.yaml"))
    assert result.exit_code == 1 and "Traceback" not in result.stderr


def test_quantize_refuses_a_batch_over_bench_s_bound_before_allocating_it(digits_run: Path) -> None:
    # 65,537 first: within memory, so without the bound it would run (and the test fail) harmlessly.
    for batch in ("65537", "1,100000000"):
        result = run_cli("quantize", str(digits_run), "-b", batch, "--seconds", "0")
        assert result.exit_code == 1, result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit)
        size = f"{max(int(b) for b in batch.split(',')):,}"
        assert f"error: batch size {size} is over the largest quantize runs, 65,536" in result.stderr
        assert "memory allocator" in result.stderr  # why there is a bound


def test_quantize_out_through_a_dangling_link_is_refused_and_creates_nothing(digits_run: Path, tmp_path: Path) -> None:
    link = tmp_path / "int8.onnx"
    link.symlink_to(tmp_path / "nowhere" / "deep" / "m.onnx")
    result = run_cli("quantize", str(digits_run), "-o", str(link), "--seconds", "0", "-b", "1")
    assert result.exit_code == 1
    assert f"cannot write {link}: it is a symbolic link to {tmp_path / 'nowhere'}" in result.stderr
    assert not (tmp_path / "nowhere").exists() and link.is_symlink()


@pytest.mark.parametrize("value", ["nan", "-1", "100.5"])
def test_max_drop_outside_0_to_100_says_the_range(digits_run: Path, value: str) -> None:
    result = run_cli("quantize", str(digits_run), "--max-drop", value)
    assert result.exit_code == 2
    assert "takes 0 to 100 accuracy points" in result.stderr and "less than or equal" not in result.stderr
