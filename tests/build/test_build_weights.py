"""`model.weights`: a torchvision state_dict file loads strictly into a spec-built model by key."""

from __future__ import annotations

import os
import pickle
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision

import cnnspec
from cnnspec.errors import CheckpointError, Diagnostic
from cnnspec.spec.overrides import load_with_overrides
from cnnspec.validate import validate_file
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
RESNET18 = ROOT / "specs" / "resnet18.yaml"


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_torchvision_weights_load_and_give_torchvisions_logits(resnet18_file: tuple[Path, torch.nn.Module]) -> None:
    path, reference = resnet18_file
    spec = load_with_overrides(RESNET18, ["model.input.height=64", "model.input.width=64", f"model.weights={path}"])
    model = cnnspec.build(spec).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_a_safetensors_file_loads_and_a_relative_path_is_relative_to_the_spec(
    resnet18_file: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    _, reference = resnet18_file
    (tmp_path / "w").mkdir()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, tmp_path / "w" / "r18.safetensors")
    text = RESNET18.read_text("utf-8").replace("\n  layers:\n", "\n  weights: w/r18.safetensors\n  layers:\n", 1)
    (tmp_path / "spec.yaml").write_text(text, "utf-8")
    model = cnnspec.build(cnnspec.load(tmp_path / "spec.yaml"))
    assert torch.equal(
        model.state_dict()["layer4.1.bn2.running_var"], reference.state_dict()["layer4.1.bn2.running_var"]
    )
    assert validate_file(tmp_path / "spec.yaml")[1] == []
    # the same spec elsewhere (the path is not looked up in the working directory): a located error
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "spec.yaml").write_text(text, "utf-8")
    (problem,) = validate_file(tmp_path / "other" / "spec.yaml")[1]
    assert problem.message == f"model.weights: no file at {tmp_path / 'other' / 'w' / 'r18.safetensors'}"
    assert (
        problem.location is not None
        and problem.location.line == text.splitlines().index("  weights: w/r18.safetensors") + 1
    )
    with pytest.raises(CheckpointError, match="no weights file"):
        cnnspec.build(cnnspec.load(tmp_path / "other" / "spec.yaml"))
    # pretrained=False skips the file (a run's checkpoint is loaded instead)
    cnnspec.build(cnnspec.load(tmp_path / "other" / "spec.yaml"), pretrained=False)


def test_a_mismatch_lists_missing_unexpected_and_shape_differences(
    resnet18_file: tuple[Path, torch.nn.Module],
) -> None:
    path, _ = resnet18_file
    # conv1 renamed (missing stem.*, unexpected conv1.*), fc to 10 classes (shapes differ)
    text = RESNET18.read_text("utf-8").replace(
        "{id: conv1, out_channels: 64, kernel_size: 7", "{id: stem, out_channels: 64, kernel_size: 7"
    )
    text = text.replace("{id: fc, out_features: 1000}", "{id: fc, out_features: 10}")
    assert "id: stem" in text and "out_features: 10}" in text
    spec = cnnspec.loads(text.replace("\n  layers:\n", f"\n  weights: {path}\n  layers:\n", 1), "spec.yaml")
    with pytest.raises(CheckpointError) as info:
        cnnspec.build(spec)
    (d,) = info.value.diagnostics
    assert d.message == f"model.weights {path} does not fit the model"
    assert d.location is not None and d.location.file == "spec.yaml"
    assert d.notes == (
        "1 missing key(s), in the model but not in the file: stem.weight",
        "1 unexpected key(s), in the file but not in the model: conv1.weight",
        "shape differs: fc.weight: file 1000×512, model 10×512",
        "shape differs: fc.bias: file 1000, model 10",
    )


def test_many_missing_keys_are_cut_to_the_first_five(tmp_path: Path) -> None:
    torch.save({}, tmp_path / "empty.pth")  # torchvision resnet18 has 122 state_dict entries
    spec = load_with_overrides(RESNET18, [f"model.weights={tmp_path / 'empty.pth'}"])
    with pytest.raises(CheckpointError) as info:
        cnnspec.build(spec)
    (note,) = info.value.diagnostics[0].notes
    assert re.fullmatch(
        r"122 missing key\(s\), in the model but not in the file: conv1\.weight, bn1\.weight, bn1\.bias, "
        r"bn1\.running_mean, bn1\.running_var, … \(117 more\)",
        note,
    ), note


def test_a_file_that_is_not_a_state_dict_is_refused_at_the_weights_key(tmp_path: Path) -> None:
    (tmp_path / "bad.pth").write_bytes(b"not a pickle")
    spec = load_with_overrides(RESNET18, [f"model.weights={tmp_path / 'bad.pth'}"])
    with pytest.raises(CheckpointError) as info:
        cnnspec.build(spec)
    (d,) = info.value.diagnostics
    # Garbage has its own message (it once said "cannot be loaded safely", as for a refused pickle).
    assert d.message == (
        f"model.weights: {tmp_path / 'bad.pth'} is not a torch checkpoint: it starts with the bytes 6e 6f 74 20, "
        "neither a zip archive (torch.save's format) nor a pickle (its old format)"
    )


# --- files that are not plain weights (found by the issue-12 attack) ----------------------------------

SMALL = """\
name: small
model:
  input: {channels: 1, height: 8, width: 8}
  weights: WEIGHTS
  layers:
    - conv2d: {id: conv1, out_channels: 4, kernel_size: 3, padding: auto}
    - batchnorm2d: {id: bn1}
    - relu
    - global_avgpool
    - linear: {id: fc, out_features: 10}
data: {dataset: {name: digits}, batch_size: 64}
train: {epochs: 1}
"""


def _small(tmp_path: Path, weights: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL.replace("WEIGHTS", weights), "utf-8")
    return spec


def _refusal(spec: Path) -> Diagnostic:
    with pytest.raises(CheckpointError) as info:
        cnnspec.build(cnnspec.load(spec))
    (d,) = info.value.diagnostics
    assert d.location is not None and d.location.line == 4  # at `weights:`
    return d


class _Mkdir:
    """Unpickling this makes a folder: what a hostile .pth would do, observable and harmless."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.target,))


def _legacy(path: Path, obj: object) -> None:
    torch.save(obj, path, _use_new_zipfile_serialization=False)  # torch's old format: a pickle stream


@pytest.mark.parametrize(
    ("writer", "old_format"),
    [
        (lambda path, obj: torch.save(obj, path), False),
        (_legacy, True),
        (lambda path, obj: path.write_bytes(pickle.dumps(obj, protocol=4)), True),  # a bare pickle
    ],
)
def test_a_pth_that_would_run_code_is_refused_without_running_and_without_torchs_advice(
    tmp_path: Path, writer: Callable[[Path, object], None], old_format: bool
) -> None:
    marker = tmp_path / "PWNED"
    writer(tmp_path / "evil.pth", {"conv1.weight": _Mkdir(marker)})
    d = _refusal(_small(tmp_path, "evil.pth"))
    assert d.message.startswith(f"model.weights: {tmp_path / 'evil.pth'} is not a plain tensor file: it holds more")
    assert ("torch's old (non-zip) format" in d.message) is old_format
    assert d.message.endswith("; nothing in it was run")
    assert "weights_only" not in d.format()  # never torch's "re-run with weights_only=False"
    assert d.hint is not None
    assert "torch.save(model.state_dict(), 'FILE.pth') (torch's zip format" in d.hint and ".safetensors" in d.hint
    assert not marker.exists()


def test_a_plain_state_dict_in_torchs_old_format_still_loads(tmp_path: Path) -> None:
    spec = _small(tmp_path, "old.pth")
    reference = cnnspec.build(cnnspec.load(spec), pretrained=False)
    torch.nn.init.normal_(reference.state_dict()["fc.weight"])
    _legacy(tmp_path / "old.pth", reference.state_dict())
    model = cnnspec.build(cnnspec.load(spec))
    assert torch.equal(model.state_dict()["fc.weight"], reference.state_dict()["fc.weight"])


def test_an_empty_file_is_said_to_be_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    d = _refusal(_small(tmp_path, "empty.pth"))
    assert d.message == f"model.weights: {tmp_path / 'empty.pth'} is empty, not a torch checkpoint"


@pytest.mark.parametrize("make", ["directory", "fifo", "dangling link"])
def test_a_path_that_is_not_a_regular_file_is_said_for_what_it_is_and_never_opened(tmp_path: Path, make: str) -> None:
    target = tmp_path / "w.pth"
    if make == "directory":
        target.mkdir()
        what = "a directory"
    elif make == "fifo":
        os.mkfifo(target)
        what = "a FIFO (named pipe)"
    else:
        target.symlink_to(tmp_path / "gone.pth")
        what = f"a symbolic link to {tmp_path / 'gone.pth'}, which does not exist"
    spec = _small(tmp_path, "w.pth")
    message = f"model.weights: {target} is {what}, not a weights file"
    assert [d.message for d in validate_file(spec)[1]] == [message]
    # A reader that opened the FIFO would wait for a writer forever: this writer ends such a wait with an
    # empty stream (so a regression fails below instead of hanging); it never finds a reader otherwise.
    stop = threading.Event()
    if make == "fifo":
        threading.Thread(target=_unblock_readers, args=(target, stop), daemon=True).start()
    try:
        d = _refusal(spec)
    finally:
        stop.set()
    assert d.message == message
    assert d.hint is not None and ("only regular files are read" in d.hint or "point the link" in d.hint)


def _unblock_readers(fifo: Path, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while nobody reads
        except OSError:
            continue
        os.close(fd)


def test_non_finite_weights_are_refused_naming_their_keys(tmp_path: Path) -> None:
    spec = _small(tmp_path, "nan.pth")
    state = cnnspec.build(cnnspec.load(spec), pretrained=False).state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    state["fc.bias"][3] = float("-inf")
    torch.save(state, tmp_path / "nan.pth")
    d = _refusal(spec)
    assert d.message == (
        f"model.weights: {tmp_path / 'nan.pth'} holds values that are not finite (NaN or ±inf) in 2 tensor(s): "
        "conv1.weight, fc.bias"
    )


def test_a_checkpoint_that_wraps_the_state_dict_is_refused_with_the_line_that_saves_it(tmp_path: Path) -> None:
    spec = _small(tmp_path, "ckpt.pth")
    state = cnnspec.build(cnnspec.load(spec), pretrained=False).state_dict()
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "ckpt.pth")
    d = _refusal(spec)
    assert d.message == (
        f"model.weights: {tmp_path / 'ckpt.pth'} holds a checkpoint, not a state_dict: its entry 'state_dict' is "
        f"a dict of {len(state)} tensors, beside 'epoch'"
    )
    assert d.hint == (
        "save the state_dict alone: torch.save(torch.load('ckpt.pth', weights_only=True)['state_dict'], "
        "'ckpt_state_dict.pth')"
    )
    # the hint's line makes a file that loads
    torch.save(torch.load(tmp_path / "ckpt.pth", weights_only=True)["state_dict"], tmp_path / "ckpt_state_dict.pth")
    _small(tmp_path, "ckpt_state_dict.pth")
    cnnspec.build(cnnspec.load(tmp_path / "spec.yaml"))


def test_train_refuses_bad_weights_before_it_writes_a_run_directory(tmp_path: Path) -> None:
    (tmp_path / "bad.pth").write_bytes(b"not a pickle")
    spec = _small(tmp_path, "bad.pth")
    result = run_cli("train", str(spec), "--out", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "model.weights: " in result.stderr and "is not a torch checkpoint" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_weights_file_of_another_suffix_is_refused_by_load_build_and_train_alike(tmp_path: Path) -> None:
    """The suffix rule is the spec's own: a real .pth file renamed .bin is refused when the spec is
    loaded (so cnnspec.build never sees it), through `--set`, and by train before its run folder."""
    spec = _small(tmp_path, "w.pth")
    torch.save(cnnspec.build(cnnspec.load(spec), pretrained=False).state_dict(), tmp_path / "w.pth")
    cnnspec.build(cnnspec.load(spec))  # the file itself loads
    (tmp_path / "w.pth").rename(tmp_path / "w.bin")
    message = "model.weights must be a .pth, .pt or .safetensors file, got 'w.bin'"
    _small(tmp_path, "w.bin")
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.build(cnnspec.load(spec))
    (d,) = info.value.diagnostics
    assert d.message == message
    assert d.location is not None and d.location.line == 4  # at `weights:`
    _small(tmp_path, "w.pth")
    with pytest.raises(cnnspec.SpecError, match=re.escape(message)):
        load_with_overrides(spec, ["model.weights=w.bin"])
    result = run_cli("train", str(spec), "--set", "model.weights=w.bin", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("int.pth", torch.int64), ("bool.safetensors", torch.bool), ("complex.pth", torch.complex64)],
)
def test_weights_that_are_not_floating_point_are_refused_naming_keys_and_dtypes(
    tmp_path: Path, name: str, dtype: torch.dtype
) -> None:
    spec = _small(tmp_path, name)
    state = cnnspec.build(cnnspec.load(spec), pretrained=False).state_dict()
    state["conv1.weight"] = torch.ones_like(state["conv1.weight"], dtype=dtype)
    state["fc.bias"] = torch.zeros_like(state["fc.bias"], dtype=dtype)
    _save(state, tmp_path / name)
    d = _refusal(spec)
    short = str(dtype).removeprefix("torch.")
    assert d.message == (
        f"model.weights: {tmp_path / name} holds 2 tensor(s) that are not floating point where the model's are: "
        f"conv1.weight ({short}, model float32), fc.bias ({short}, model float32)"
    )


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("half.pth", torch.float16), ("bf16.safetensors", torch.bfloat16), ("f64.safetensors", torch.float64)],
)
def test_floating_point_weights_of_another_width_load_cast_to_float32(
    tmp_path: Path, name: str, dtype: torch.dtype
) -> None:
    spec = _small(tmp_path, name)
    torch.manual_seed(1)
    state = cnnspec.build(cnnspec.load(spec), pretrained=False).state_dict()
    assert state["bn1.num_batches_tracked"].dtype == torch.int64  # an integer buffer, saved as one
    saved = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    _save(saved, tmp_path / name)
    loaded = cnnspec.build(cnnspec.load(spec)).state_dict()
    for k, v in saved.items():
        assert loaded[k].dtype == state[k].dtype, k
        assert torch.equal(loaded[k], v.to(state[k].dtype)), k
