"""External data must stay inside the model's folder; refused before onnxruntime opens the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnnspec.deploy.safety import check_external_data, load_checked
from cnnspec.deploy.session import open_session
from cnnspec.errors import ExportError

WEIGHTS = np.arange(8, dtype=np.float32).reshape(4, 2)


def matmul_model() -> onnx.ModelProto:
    """input (N, 4) @ W (4, 2) -> logits: the smallest graph with a weight to keep outside."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(WEIGHTS, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def save_external(folder: Path, location: str = "weights.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(matmul_model(), str(path), save_as_external_data=True, location=location, size_threshold=0)
    return path


def set_location(path: Path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(path))


def test_external_data_inside_the_folder_is_accepted_and_runs(tmp_path: Path) -> None:
    path = save_external(tmp_path / "m")
    assert check_external_data(load_checked(path), path) == [(tmp_path / "m" / "weights.bin").resolve()]
    session = open_session(path, device="cpu")
    x = np.ones((3, 4), dtype=np.float32)
    assert np.array_equal(session.run(x), x @ WEIGHTS)


def test_an_absolute_location_is_refused(tmp_path: Path) -> None:
    path = save_external(tmp_path / "m")
    set_location(path, str((tmp_path / "m" / "weights.bin").resolve()))  # even one that points back inside
    with pytest.raises(ExportError, match=r"refused.*absolute path"):
        open_session(path)


def test_a_location_with_dotdot_is_refused(tmp_path: Path) -> None:
    path = save_external(tmp_path / "m")
    os.replace(tmp_path / "m" / "weights.bin", tmp_path / "weights.bin")
    set_location(path, "../weights.bin")  # the file exists there: onnxruntime would read it
    with pytest.raises(ExportError, match=r"refused.*'\.\.'"):
        open_session(path)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    path = save_external(tmp_path / "m")
    secret = tmp_path / "secret.bin"
    os.replace(tmp_path / "m" / "weights.bin", secret)
    (tmp_path / "m" / "weights.bin").symlink_to(secret)
    with pytest.raises(ExportError, match=r"refused.*outside the model's folder"):
        open_session(path)


def test_a_symlink_that_stays_inside_is_accepted(tmp_path: Path) -> None:
    path = save_external(tmp_path / "m")
    (tmp_path / "m" / "data").mkdir()
    os.replace(tmp_path / "m" / "weights.bin", tmp_path / "m" / "data" / "w.bin")
    (tmp_path / "m" / "weights.bin").symlink_to(tmp_path / "m" / "data" / "w.bin")
    assert open_session(path, device="cpu").run(np.zeros((1, 4), dtype=np.float32)).shape == (1, 2)


def test_a_missing_external_file_is_reported(tmp_path: Path) -> None:
    path = save_external(tmp_path / "m")
    (tmp_path / "m" / "weights.bin").unlink()
    with pytest.raises(ExportError, match="does not exist"):
        open_session(path)


def test_external_data_in_a_constant_node_is_checked_too(tmp_path: Path) -> None:
    path = save_external(tmp_path / "m")
    model = onnx.load(str(path), load_external_data=False)
    tensor = TensorProto()
    tensor.CopyFrom(model.graph.initializer[0])
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = "/etc/passwd"
    model.graph.node.insert(0, helper.make_node("Constant", [], ["unused"], value=tensor))
    with pytest.raises(ExportError, match="absolute path"):
        check_external_data(model, path)


def test_external_data_in_a_local_functions_sparse_constant_is_checked_too(tmp_path: Path) -> None:
    # A model-local function's nodes are read like the graph's: a sparse tensor attribute included.
    path = save_external(tmp_path / "m")
    model = onnx.load(str(path), load_external_data=False)
    values = TensorProto()
    values.CopyFrom(model.graph.initializer[0])
    for entry in values.external_data:
        if entry.key == "location":
            entry.value = "/etc/passwd"
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.arange(8, dtype=np.int64)), [8])
    constant = helper.make_node("Constant", [], ["y"], sparse_value=sparse)
    model.functions.append(helper.make_function("local", "f", [], ["y"], [constant], [helper.make_opsetid("", 18)]))
    with pytest.raises(ExportError, match="absolute path"):
        check_external_data(model, path)


def test_a_damaged_file_is_an_export_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffnot protobuf at all")
    with pytest.raises(ExportError, match="not a readable ONNX file"):
        open_session(bad)
