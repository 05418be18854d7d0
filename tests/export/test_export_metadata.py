"""Metadata encoding, fp16 weight storage and init_run, each on its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import cnnspec
from cnnspec.deploy.fp16 import fp16_weights
from cnnspec.deploy.metadata import ModelMetadata, attach, from_props, read_props
from cnnspec.errors import ExportError, SpecError
from cnnspec.rundir.info import read_info, spec_hash
from cnnspec.rundir.reader import load_trained
from cnnspec.rundir.untrained import init_run
from tests.export._export_helpers import TINY_GREY


def test_metadata_round_trips_through_metadata_props() -> None:
    meta = ModelMetadata(input_shape=[3, 4, 5], class_names=["cat", "dog"], mean=[0.1, 0.2, 0.3], std=[1, 2, 3])
    model = helper.make_model(helper.make_graph([], "g", [], []))
    entry = model.metadata_props.add()
    entry.key, entry.value = "author", "someone"  # a foreign key survives
    attach(model, meta)
    props = read_props(model, "model")
    assert json.loads(props["class_names"]) == ["cat", "dog"] and props["layout"] == '"NCHW"'
    back = from_props(props, "m.onnx")
    assert back.input_shape == [3, 4, 5] and back.mean == [0.1, 0.2, 0.3] and back.extra == {"author": "someone"}
    attach(model, back)  # attaching again replaces, never duplicates
    assert sorted(p.key for p in model.metadata_props) == sorted(set(p.key for p in model.metadata_props))


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"input_shape": "[1, 8, 8]"}, "no cnnspec metadata"),
        ({"input_shape": "[1, 8", "class_names": "[]"}, "not JSON"),
        ({"input_shape": "[8, 8]", "class_names": "[]"}, "must be \\[C, H, W\\]"),
    ],
)
def test_damaged_metadata_is_an_export_error(props: dict[str, str], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        from_props(props, "m.onnx")


def test_fp16_weights_store_matrices_as_half_and_cast_back(tmp_path: Path) -> None:
    w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    b = np.full(3, 1e-6, dtype=np.float32)  # tiny 1-D values stay fp32
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    assert fp16_weights(model) == 1
    onnx.checker.check_model(model, full_check=True)
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert types == {"W__fp16": TensorProto.FLOAT16, "B": TensorProto.FLOAT}
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = np.eye(4, dtype=np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.array_equal(got, w.astype(np.float16).astype(np.float32) + b)


def test_fp16_refuses_weights_beyond_half_range() -> None:
    graph = helper.make_graph([], "g", [], [], [numpy_helper.from_array(np.full((2, 2), 1e6, dtype=np.float32), "W")])
    with pytest.raises(ExportError, match="beyond float16's range"):
        fp16_weights(helper.make_model(graph))


def test_init_run_writes_a_loadable_untrained_run(tmp_path: Path) -> None:
    spec = cnnspec.loads(TINY_GREY)
    run = init_run(spec, tmp_path / "run", class_names=["a", "b", "c"], seed=3)
    info = read_info(run)
    assert info.class_names == ["a", "b", "c"] and info.input_shape == [1, 8, 8]
    assert info.spec_hash == spec_hash(spec) and info.mean is None
    trained = load_trained(run)
    again = load_trained(init_run(spec, tmp_path / "again", seed=3))
    for (name, t1), t2 in zip(trained.model.state_dict().items(), again.model.state_dict().values(), strict=True):
        assert t1.equal(t2), name  # same seed, same weights
    with pytest.raises(SpecError, match="class logits"):
        init_run(spec, tmp_path / "bad", class_names=["only one"])
