"""ONNX files someone sent: metadata that asks for too much, metadata of the wrong types or lengths,
graphs that are not image classifiers, decompression bombs (issue 14, items 13 and 16).

Every file is real (a cnnspec export with its metadata rewritten, or a graph made with
onnx.helper). Files that ask for large allocations go through `python -m cnnspec` in a
process whose address space is capped (RLIMIT_AS), so a command that tried to allocate what
the file asks for would die with MemoryError instead of slowing the machine down; the
others run in this process, where any exception but a clean exit fails the test. The answer
must be exit 1 with a message naming the key and what it may hold, and no traceback.
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnnspec.deploy.exporter import ExportReport
from cnnspec.deploy.metadata import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_ELEMENTS,
    MAX_SIDE,
    ModelMetadata,
    attach,
)
from tests.cli_helpers import run_cli
from tests.export._export_helpers import rewrite_metadata, write_image

MEMORY_CAP = 4 * 2**30  # bytes of address space for the child: far below what the hostile files ask for


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cnnspec_capped(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_cap,
    )


def cnnspec_here(*args: str) -> subprocess.CompletedProcess[str]:
    """In this process (typer's CliRunner; an exception other than SystemExit fails the test): for files
    that ask for nothing large, where a real process per case would only cost start-up time."""
    result = run_cli(*args)
    return subprocess.CompletedProcess(["cnnspec", *args], result.exit_code, result.stdout, result.stderr)


def assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return write_image(tmp_path / "img.png", (8, 8), "L", seed=1)


# --- item 13: what metadata may ask for ---------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"input_shape": [1, 60000, 60000], "resize": [60000, 60000]}, "input_shape"),  # 14 GB an image
        ({"input_shape": [1, MAX_SIDE + 1, 8]}, "input_shape"),
        ({"input_shape": [3, 4097, 4096]}, "input_shape"),  # each side allowed, C·H·W one too many
        ({"input_shape": [MAX_CHANNELS + 1, 8, 8]}, "input_shape"),
        ({"class_names": [str(i) for i in range(MAX_CLASSES + 1)]}, "class_names"),
        ({"class_names": ["x" * 5000] * 10}, "class_names"),
        ({"resize": [100000, 100000]}, "resize"),
    ],
    ids=["60000²+resize", "side", "elements", "channels", "classes", "class-name", "resize"],
)
def test_metadata_asking_for_too_much_is_refused_before_allocating(
    digits_export: ExportReport, tmp_path: Path, image: Path, values: dict[str, object], key: str
) -> None:
    model = rewrite_metadata(digits_export.path, tmp_path / "sent.onnx", **values)
    proc = cnnspec_capped("predict", str(model), str(image), "--device", "cpu")
    assert_refused(proc, f"metadata '{key}' must be")


def test_the_largest_allowed_image_fits_the_bound() -> None:
    # The bounds' own arithmetic, by hand: 3·4096·4096 values = 192 MiB as float32.
    assert MAX_IMAGE_ELEMENTS * 4 == 192 * 2**20 and 3 * 4096 * 4096 <= MAX_IMAGE_ELEMENTS < 3 * 4097 * 4096


# 1.3 G parameters (5.2 GB): within validate's memory limit, over what bench builds (2^29).
EMBEDDED_HUGE = """\
name: huge
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 2000000, kernel_size: 3, padding: 1}
    - flatten
    - linear: {out_features: 10}
"""
# 6.5·10^15 parameters (360 TB as the issue measured it): the checker's memory limit refuses it.
EMBEDDED_ABSURD = EMBEDDED_HUGE.replace("out_channels: 2000000", "out_channels: 10000000000000")
EMBEDDED_WIDE = """\
name: wide
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - upsample: {scale_factor: 256}
    - upsample: {scale_factor: 16}
    - maxpool2d: {kernel_size: 4096}
    - flatten
    - linear: {out_features: 10}
"""
EMBEDDED_WEIGHTS = """\
name: backbone
model:
  input: {channels: 3, height: 32, width: 32}
  layers:
    - torchvision: {model: resnet18, weights: /etc/passwd.pth}
    - linear: {out_features: 10}
"""


@pytest.mark.parametrize(
    ("base", "spec", "message"),
    [
        ("digits_export", EMBEDDED_HUGE, "refused to build the embedded spec: 1,300,000,010 parameters"),
        ("digits_export", EMBEDDED_ABSURD, "the model's weights need 23.09 PiB (6,500,000,000,000,010 params"),
        ("digits_export", EMBEDDED_WIDE, "refused to build the embedded spec"),
        ("small_cnn_export", EMBEDDED_WEIGHTS, "layer 'torchvision_0' loads weights from"),
        (
            "digits_export",
            EMBEDDED_HUGE.replace("out_features: 10", "out_features: 7"),
            "embedded spec takes [1, 8, 8]",
        ),
    ],
    ids=["5GB-of-weights", "360TB-of-weights", "activations", "weights-file", "other-model"],
)
def test_bench_refuses_an_embedded_spec_it_should_not_build(
    request: pytest.FixtureRequest, tmp_path: Path, base: str, spec: str, message: str
) -> None:
    export: ExportReport = request.getfixturevalue(base)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not a checkpoint")
    # The file lies outside any run, so bench would build the torch model from its embedded spec.
    model = rewrite_metadata(export.path, tmp_path / "sent.onnx", spec=spec.replace("/etc/passwd.pth", str(weights)))
    proc = cnnspec_capped("bench", str(model), "--batch", "1", "--seconds", "0", "--device", "cpu")
    assert_refused(proc, message)


# --- item 16: metadata of the wrong types or lengths --------------------------------------


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"mean": [0.1, 0.2, 0.3], "std": [0.2, 0.2, 0.2]}, "mean"),  # 3 values for 1 channel
        ({"mean": [0.5], "std": [0.2, 0.3]}, "std"),
        ({"mean": [0.5], "std": [0.0]}, "std"),
        ({"mean": ["a"], "std": [1.0]}, "mean"),
        ({"mean": [True], "std": [1.0]}, "mean"),
        ({"mean": 0.5, "std": [1.0]}, "mean"),
        ({"input_shape": [1, 8.5, 8]}, "input_shape"),
        ({"input_shape": ["1", 8, 8]}, "input_shape"),
        ({"class_names": "0123456789"}, "class_names"),
        ({"class_names": list(range(10))}, "class_names"),
        ({"class_names": []}, "class_names"),
        ({"class_names": ["cat", "dog", "2", "3", "4", "5", "6", "7", "8", "cat"]}, "class_names"),  # which "cat"?
        ({"class_names": ["", "1", "2", "3", "4", "5", "6", "7", "8", "9"]}, "class_names"),
        ({"resize": "big"}, "resize"),
        ({"resize": [8]}, "resize"),
        ({"pixel_scale": 0}, "pixel_scale"),
        ({"layout": "NHWC"}, "layout"),
        ({"color": "cmyk"}, "color"),
        ({"spec_name": 5}, "spec_name"),
        ({"dynamic_batch": "yes"}, "dynamic_batch"),
        ({"spec": ["not", "text"]}, "spec"),
    ],
)
def test_metadata_of_the_wrong_type_or_length_is_refused(
    digits_export: ExportReport, tmp_path: Path, image: Path, values: dict[str, object], key: str
) -> None:
    model = rewrite_metadata(digits_export.path, tmp_path / "sent.onnx", **values)
    message = "input_shape must be [C, H, W]" if key == "input_shape" else f"metadata '{key}' must be"
    assert_refused(cnnspec_here("predict", str(model), str(image), "--device", "cpu"), message)


def test_input_shape_that_disagrees_with_the_graph_is_refused(
    digits_export: ExportReport, tmp_path: Path, image: Path
) -> None:
    model = rewrite_metadata(digits_export.path, tmp_path / "sent.onnx", input_shape=[1, 16, 16], resize=[16, 16])
    proc = cnnspec_here("predict", str(model), str(image), "--device", "cpu")
    assert_refused(proc, "its input is tensor(float) [", "expected one float32 input [N, 1, 16, 16]")


# --- item 16: graphs that are not image classifiers ---------------------------------------


def _classifier_parts() -> tuple[list[onnx.NodeProto], onnx.TensorProto]:
    w = numpy_helper.from_array(np.linspace(-1, 1, 640, dtype=np.float32).reshape(64, 10), "W")
    return [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["logits"])], w


def _graph_model(kind: str) -> onnx.ModelProto:
    nodes, w = _classifier_parts()
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    inputs, outputs, inits = [image], [logits], [w]
    if kind == "two-inputs":
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, 8, 8]))
        nodes.insert(0, helper.make_node("Mul", ["input", "mask"], ["x"]))
    elif kind == "integer-input":
        inputs = [helper.make_tensor_value_info("input", TensorProto.INT64, ["N", 1, 8, 8])]
        nodes.insert(0, helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT))
    elif kind == "1-D-output":
        nodes = [helper.make_node("Identity", ["input"], ["x"]), *nodes]
        nodes[-1] = helper.make_node("MatMul", ["flat", "W"], ["scores"])
        inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"))
        nodes.append(helper.make_node("Reshape", ["scores", "flat_shape"], ["logits"]))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["M"])]
    elif kind == "4-D-output":
        nodes = [helper.make_node("Identity", ["input"], ["logits"])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1, 8, 8])]
        inits = []
    elif kind == "two-outputs":
        nodes = [helper.make_node("Identity", ["input"], ["x"]), *nodes, helper.make_node("Relu", ["logits"], ["p"])]
        outputs.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 10]))
    elif kind == "wrong-class-count":
        nodes = [helper.make_node("Identity", ["input"], ["x"]), *nodes]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 7])]
        inits = [numpy_helper.from_array(np.ones((64, 7), dtype=np.float32), "W")]
    else:
        nodes = [helper.make_node("Identity", ["input"], ["x"]), *nodes]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _with_metadata(kind: str, digits_export: ExportReport, path: Path) -> Path:
    model = _graph_model(kind)
    onnx.checker.check_model(model, full_check=True)  # a valid ONNX file: only its purpose is wrong
    spec = digits_export.metadata.spec
    attach(model, ModelMetadata(input_shape=[1, 8, 8], class_names=[str(i) for i in range(10)], spec=spec))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("two-inputs", "has 2 inputs (input, mask); expected one float32 input [N, 1, 8, 8]"),
        ("integer-input", "its input is tensor(int64) ['N', 1, 8, 8]; expected one float32 input"),
        ("1-D-output", "its output is tensor(float) ['M']; expected one float32 output [N, 10]"),
        ("4-D-output", "its output is tensor(float) ['N', 1, 8, 8]; expected one float32 output [N, 10]"),
        ("two-outputs", "has 2 outputs (logits, p)"),
        ("wrong-class-count", "its output is tensor(float) ['N', 7]; expected one float32 output [N, 10]"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "bench"])
def test_a_graph_that_is_not_an_image_classifier_is_refused(
    digits_export: ExportReport, tmp_path: Path, image: Path, kind: str, message: str, command: str
) -> None:
    model = _with_metadata(kind, digits_export, tmp_path / f"{kind}.onnx")
    args = [str(image)] if command == "predict" else ["--batch", "1", "--seconds", "0"]
    proc = cnnspec_here(command, str(model), *args, "--device", "cpu")
    assert_refused(proc, message)


def test_the_hand_made_classifier_itself_predicts(digits_export: ExportReport, tmp_path: Path, image: Path) -> None:
    # Control: the same construction with one float input and a [N, 10] output is accepted.
    model = _with_metadata("plain", digits_export, tmp_path / "plain.onnx")
    proc = cnnspec_here("predict", str(model), str(image), "--device", "cpu", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["predictions"][0]["top"]) == 5


# --- item 16: decompression bombs ----------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width×height 8-bit grey pixels and holds one row: a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_a_decompression_bomb_is_refused(digits_export: ExportReport, tmp_path: Path) -> None:
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # 400 million pixels claimed
    assert bomb.stat().st_size < 200
    proc = cnnspec_capped("predict", str(digits_export.path), str(bomb), "--device", "cpu")
    assert_refused(proc, f"{bomb} is refused: Image size (400000000 pixels) exceeds limit")
