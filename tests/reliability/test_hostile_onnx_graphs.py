"""ONNX files someone sent whose graph or metadata would hang or crash predict and bench (issue 14,
attack findings E and F, and onnxruntime's own log on stderr).

Every file is a real ONNX model made with onnx.helper around a small image classifier (Flatten,
MatMul: 1×8×8 images, 10 classes) with cnnspec's metadata attached. Refusals are checked in this
process through the CLI (any escaped exception fails the test), with the real onnxruntime class
counting the sessions created (none may be); what only a real process shows (a Ctrl-C, what
onnxruntime writes to the stderr file descriptor) runs `python -m cnnspec` or a driver script.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from cnnspec.deploy.metadata import MAX_DEPTH, MAX_VALUE_CHARS, ModelMetadata, attach
from tests.reliability._reliability_helpers import ROOT, assert_refused, cli, report

CLASSES = [str(i) for i in range(10)]


def _tensor(name: str, shape: list[int | str], kind: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, shape)


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], **kw: object) -> onnx.ModelProto:
    """input (N, 1, 8, 8) → Flatten → MatMul W → `nodes` → logits (N, 10), with cnnspec's metadata."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 640, dtype=np.float32).reshape(64, 10), "W")
    head = [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["logits0"])]
    tail = nodes or [helper.make_node("Identity", ["logits0"], ["logits"])]
    graph = helper.make_graph(
        [*head, *tail], "sent", [_tensor("input", ["N", 1, 8, 8])], [_tensor("logits", ["N", 10])], [w, *inits]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10, **kw)
    attach(model, ModelMetadata(input_shape=[1, 8, 8], class_names=CLASSES))
    return model


def _loop() -> onnx.ModelProto:
    """The attack's file: logits pass through a Loop of 2^62 iterations whose condition stays true."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [_tensor("iter", [], TensorProto.INT64), _tensor("cond_in", [], TensorProto.BOOL), _tensor("v_in", None)],  # type: ignore[arg-type]
        [_tensor("cond_out", [], TensorProto.BOOL), _tensor("v_out", None)],  # type: ignore[arg-type]
    )
    inits = [
        numpy_helper.from_array(np.array(2**62, dtype=np.int64), "M"),
        numpy_helper.from_array(np.array(True), "C"),
    ]
    return _model([helper.make_node("Loop", ["M", "C", "logits0"], ["logits"], name="spin", body=body)], inits)


def _scan() -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Identity", ["row_in"], ["row_out"])],
        "body",
        [_tensor("row_in", [10])],
        [_tensor("row_out", [10])],
    )
    node = helper.make_node("Scan", ["logits0"], ["logits"], name="rows", body=body, num_scan_inputs=1)
    return _model([node], [])


def _if() -> onnx.ModelProto:
    def branch(name: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Identity", ["logits0"], [f"{name}_out"])], name, [], [_tensor(f"{name}_out", ["N", 10])]
        )

    inits = [numpy_helper.from_array(np.array(True), "C")]
    node = helper.make_node(
        "If", ["C"], ["logits"], name="choose", then_branch=branch("then"), else_branch=branch("else")
    )
    return _model([node], inits)


def _loop_in_function() -> onnx.ModelProto:
    """A model-local function whose body holds the Loop: onnxruntime inlines it into the graph."""
    spin = _loop().graph.node[-1]
    function = helper.make_function(
        "local",
        "spinner",
        ["M", "C", "x"],
        ["y"],
        [helper.make_node("Loop", ["M", "C", "x"], ["y"], body=spin.attribute[0].g)],
        opset_imports=[helper.make_opsetid("", 18)],
    )
    inits = list(_loop().graph.initializer)[1:]  # M and C (W comes with _model)
    node = helper.make_node("spinner", ["M", "C", "logits0"], ["logits"], domain="local", name="call")
    model = _model([node], inits, functions=[function])
    model.opset_import.append(helper.make_opsetid("local", 1))
    return model


def _contrib_with_subgraph() -> onnx.ModelProto:
    """A node of another domain carrying a graph attribute (onnxruntime's search ops loop over theirs)."""
    inner = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["b"])], "decoder", [_tensor("a", [1])], [_tensor("b", [1])]
    )
    node = helper.make_node("BeamSearch", ["logits0"], ["logits"], domain="com.microsoft", name="search", decoder=inner)
    model = _model([node], [])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


CONTROL_FLOW = {
    "Loop of 2^62 iterations": (_loop, "contains a Loop node ('spin')"),
    "Scan": (_scan, "contains a Scan node ('rows')"),
    "If": (_if, "contains an If node ('choose')"),
    "Loop in a local function": (_loop_in_function, "contains a Loop node (unnamed) in function 'spinner'"),
    "contrib op with a subgraph": (_contrib_with_subgraph, "contains a com.microsoft.BeamSearch node ('search')"),
}


@pytest.fixture
def forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Paths of the onnxruntime sessions asked for while the test runs; each is refused (a Loop's session
    would run for ever: the test fails on the refusal instead of hanging)."""
    import onnxruntime as ort

    asked: list[str] = []

    class Refusing(ort.InferenceSession):  # type: ignore[misc]
        def __init__(self, path: object, *args: object, **kwargs: object) -> None:
            asked.append(str(path))
            raise RuntimeError("this test allows no onnxruntime session")

    monkeypatch.setattr(ort, "InferenceSession", Refusing)
    yield asked


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(path)
    return path


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _commands(model: Path, image: Path) -> list[tuple[str | Path, ...]]:
    return [
        ("predict", model, image, "--device", "cpu"),
        ("predict", model, image),  # auto: the CUDA probe would be a session (and a run) too
        ("bench", model, "--batch", "1", "--seconds", "0", "--device", "cpu"),
    ]


def test_the_classifier_the_hostile_files_are_built_around_predicts(
    tmp_path: Path, image: Path, sessions: list[str]
) -> None:
    model = _save(_model([], []), tmp_path / "plain.onnx")
    result = cli("predict", model, image, "--device", "cpu", "--format", "json")
    assert result.code == 0 and result.exception is None, result.output
    assert len(json.loads(result.stdout)["predictions"][0]["top"]) == 5
    assert sessions == [str(model)]


def test_graphs_with_control_flow_are_refused_before_any_session(
    tmp_path: Path, image: Path, forbidden: list[str]
) -> None:
    refused = 0
    for i, (case, (make, message)) in enumerate(CONTROL_FLOW.items()):
        model = _save(make(), tmp_path / f"case{i}.onnx")
        for args in _commands(model, image):
            result = cli(*args)
            assert_refused(result, message, "cnnspec runs image classifiers without control flow")
            refused += 1
        assert forbidden == [], f"{case}: an onnxruntime session was asked for {forbidden}"
    report("hostile-onnx control flow", graphs=len(CONTROL_FLOW), commands_refused=refused, sessions_created=0)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


DEEP = {
    "class_names 200,000 deep": ("class_names", _nested(200_000)),
    "preprocessing 200,000 deep": ("preprocessing", _nested(200_000)),
    "parity 200,000 deep": ("parity", '{"batches": ' + _nested(200_000) + "}"),
    f"mean {MAX_DEPTH + 1} deep": ("mean", _nested(MAX_DEPTH + 1)),  # Python's reader parses it; the bound does not
}


def _with_prop(key: str, raw: str) -> onnx.ModelProto:
    model = _model([], [])
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = raw
            break
    else:
        model.metadata_props.add(key=key, value=raw)
    return model


def test_metadata_nested_deeper_than_the_bound_is_refused(tmp_path: Path, image: Path) -> None:
    refused = 0
    for i, (key, raw) in enumerate(DEEP.values()):
        model = _save(_with_prop(key, raw), tmp_path / f"deep{i}.onnx")
        for args in _commands(model, image):
            assert_refused(cli(*args), f"metadata '{key}' nests lists or objects deeper than {MAX_DEPTH} levels")
            refused += 1
    # One level less is read (and then judged by the key's own rule).
    model = _save(_with_prop("mean", _nested(MAX_DEPTH)), tmp_path / "shallow.onnx")
    assert_refused(cli("predict", model, image, "--device", "cpu"), "metadata 'mean' must be null or a list")
    report("hostile-onnx deep metadata", values=len(DEEP), commands_refused=refused, tracebacks=0)


def test_a_metadata_value_longer_than_the_bound_is_refused_unparsed(tmp_path: Path, image: Path) -> None:
    raw = json.dumps(["x" * MAX_VALUE_CHARS])
    model = _save(_with_prop("class_names", raw), tmp_path / "long.onnx")
    assert_refused(
        cli("predict", model, image, "--device", "cpu"),
        f"metadata 'class_names' is {len(raw):,} characters long; at most {MAX_VALUE_CHARS:,} are read",
    )


# --- the session guard: Ctrl-C stops a run that would take hours ------------------------------------

SIDE = 4096  # one MatMul of two SIDE×SIDE matrices: 137 GFLOP, one to a few dozen seconds on one core
MATMULS = 600  # ten minutes to hours on one core, in a graph without control flow (and a small file)

DRIVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from cnnspec.deploy.session import open_session

    session = open_session(sys.argv[1], "cpu", threads=1)
    print("running", flush=True)
    try:
        session.run(np.zeros((1, 1, 8, 8), dtype=np.float32))
    except KeyboardInterrupt:
        print("stopped", flush=True)
        sys.exit(0)
    print("finished", flush=True)
    """
)


def _hours_long() -> onnx.ModelProto:
    """Image → (1, SIDE) → expanded to the SIDE×SIDE matrix y0 → MATMULS MatMuls by y0 → (1, 10). Every
    matrix comes from the input at run time: the file stays small and nothing is folded or packed ahead."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((10, SIDE)).astype(np.float32) / 100, "widen"),
        numpy_helper.from_array(np.array([SIDE, SIDE], dtype=np.int64), "side"),
        numpy_helper.from_array(rng.standard_normal((SIDE, 10)).astype(np.float32) / 100, "narrow"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "rows"),
    ]
    nodes = [
        helper.make_node("MatMul", ["logits0", "widen"], ["wide"]),
        helper.make_node("Expand", ["wide", "side"], ["y0"]),
    ]
    nodes += [helper.make_node("MatMul", [f"y{i}", "y0"], [f"y{i + 1}"]) for i in range(MATMULS)]
    nodes += [
        helper.make_node("ReduceMean", [f"y{MATMULS}", "rows"], ["mean"], keepdims=1),
        helper.make_node("MatMul", ["mean", "narrow"], ["logits"]),
    ]
    return _model(nodes, inits)


def test_ctrl_c_stops_a_run_that_would_take_hours(tmp_path: Path) -> None:
    model = _save(_hours_long(), tmp_path / "hours.onnx")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "running\n", proc.stderr.read() if proc.stderr else ""
        # Session.run is entered right after the line; the graph keeps onnxruntime busy for hours.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
        assert proc.returncode is None, "the run ended by itself"
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # without the guard, Ctrl-C waits for the whole run: a timeout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, "Traceback" in err) == (0, "stopped\n", False), err
    report("hostile-onnx session guard", matmuls=MATMULS, side=SIDE, ctrl_c="stopped the run")


# --- onnxruntime's own log stays off stderr --------------------------------------------------------

MEMORY_CAP = 4 * 2**30


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def test_onnxruntime_writes_no_log_lines_of_its_own_to_stderr(tmp_path: Path, image: Path) -> None:
    """A graph that fails inside onnxruntime (an Expand to 10^11 floats, beyond the capped address space):
    cnnspec's one error, without onnxruntime's coloured `[E:onnxruntime:...]` line before it."""
    inits = [
        numpy_helper.from_array(np.array([10**10, 10], dtype=np.int64), "huge"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "rows"),
    ]
    nodes = [
        helper.make_node("Expand", ["logits0", "huge"], ["big"]),
        helper.make_node("ReduceMean", ["big", "rows"], ["logits"], keepdims=1),
    ]
    model = _save(_model(nodes, inits), tmp_path / "expand.onnx")
    proc = subprocess.run(
        [sys.executable, "-m", "cnnspec", "predict", str(model), str(image), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=_cap,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    # All of stderr is cnnspec's one error line (which quotes onnxruntime's exception).
    assert proc.stderr.startswith(f"error: onnxruntime cannot run {model} on a batch of [1, 1, 8, 8]"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "\x1b[" not in proc.stderr, proc.stderr
    report("hostile-onnx runtime log", stderr_lines=len(proc.stderr.splitlines()), ansi_sequences=0)
