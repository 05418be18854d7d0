"""Hostile and damaged checkpoints: refused with a clear error, and nothing in them ever runs.

Pickles with a `__reduce__` payload (as torchvision `weights:` files and as the training
state), truncated safetensors, and bit flips found by the stored hashes, through the real
`cnnspec train`, `train --resume`, `export` and `evaluate` commands.
"""

from __future__ import annotations

import os
import pickle
import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cnnspec.builder.weight_files import load_state_dict_file
from cnnspec.errors import CheckpointError
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights
from tests.reliability._reliability_helpers import assert_refused, cli, report


class Payload:
    """Unpickling this runs `call(*args)`: the classic malicious-checkpoint trick."""

    def __init__(self, call: Callable[..., object], *args: object):
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.call, self.args


def _payloads(sentinel: Path) -> dict[str, Payload]:
    return {
        "os.system": Payload(os.system, f"touch {sentinel}"),
        "builtins.exec": Payload(exec, f"open({str(sentinel)!r}, 'w').close()"),
    }


def hostile_files(folder: Path, sentinel: Path) -> list[Path]:
    """Weight files that create `sentinel` when unpickled the unsafe way, in every container torch reads."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, payload in _payloads(sentinel).items():
        tag = name.replace(".", "_")
        zipped = folder / f"{tag}_torch_save.pth"  # torch.save's zip container, beside real tensors
        torch.save({"features.0.0.weight": torch.zeros(1), "evil": payload}, zipped)
        wrapped = folder / f"{tag}_state_dict.pt"  # the {"state_dict": ...} layout Lightning writes
        torch.save({"state_dict": {"evil": payload}}, wrapped)
        raw = folder / f"{tag}_raw_pickle.pth"  # a bare pickle, no zip at all
        raw.write_bytes(pickle.dumps({"evil": payload}, protocol=2))
        disguised = folder / f"{tag}_named.safetensors"  # a pickle under a safetensors name
        disguised.write_bytes(zipped.read_bytes())
        files += [zipped, wrapped, raw, disguised]
    return files


def test_the_payloads_are_armed(tmp_path: Path) -> None:
    """Control: loaded the unsafe way, each file does run its code (so refusing them means something)."""
    count = len(hostile_files(tmp_path / "count", tmp_path / "unused"))
    armed = 0
    for i in range(count):
        sentinel = tmp_path / f"control-{i}"
        path = hostile_files(tmp_path / f"armed{i}", sentinel)[i]
        if path.suffix == ".safetensors":  # a byte copy of the torch.save file (torch.load reads it as safetensors)
            continue
        if path.read_bytes()[:2] == b"PK":  # torch.save's zip container
            torch.load(path, weights_only=False)
        else:
            pickle.loads(path.read_bytes())
        assert sentinel.exists(), f"{path.name} did not run its payload when unpickled unsafely"
        armed += 1
    report("hostile-controls", files=count, ran_code_when_loaded_unsafely=armed)


def test_pickle_payloads_as_torchvision_weights_are_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "PWNED"
    files = hostile_files(tmp_path / "weights", sentinel)
    refused = 0
    for path in files:
        spec = tmp_path / f"{path.stem}.yaml"
        spec.write_text(
            "name: transfer\n"
            "model:\n"
            "  input: {channels: 3, height: 32, width: 32}\n"
            "  layers:\n"
            f"    - torchvision: {{model: mobilenet_v3_small, weights: {str(path)!r}}}\n"
            "    - linear: {out_features: 2}\n"
            "data:\n"
            "  dataset: {name: synthetic, num_samples: 8, num_classes: 2}\n"
            "  batch_size: 4\n"
            "train: {epochs: 1}\n",
            encoding="utf-8",
        )
        result = cli("train", spec, "--out", tmp_path / f"run-{path.stem}", "--quiet")
        expected = "not a readable safetensors file" if path.suffix == ".safetensors" else "refused: it asks to call"
        assert_refused(result, str(path), expected)
        with pytest.raises(CheckpointError):
            load_state_dict_file(path)
        refused += 1
    assert not sentinel.exists(), "a payload ran"
    report("hostile-weights", files=len(files), refused=refused, code_executed=int(sentinel.exists()))


def test_pickle_payload_as_training_state_is_refused(copy_run: Callable[[str], Path], tmp_path: Path) -> None:
    sentinel = tmp_path / "PWNED"
    files = [p for p in hostile_files(tmp_path / "states", sentinel) if p.suffix != ".safetensors"]
    for i, path in enumerate(files):
        run = copy_run(f"run{i}")
        RunPaths(run).state.write_bytes(path.read_bytes())
        result = cli("train", "--resume", run, "--set", "train.epochs=3", "--quiet")
        assert_refused(result, "last.state.pt cannot be read: refused: it asks to call")
        with pytest.raises(CheckpointError):
            load_state(RunPaths(run).state)
    assert not sentinel.exists(), "a payload ran"
    report("hostile-state", files=len(files), refused=len(files), code_executed=int(sentinel.exists()))


def test_pickle_payload_as_model_weights_is_refused_by_export_and_evaluate(
    copy_run: Callable[[str], Path], tmp_path: Path
) -> None:
    sentinel = tmp_path / "PWNED"
    payload = hostile_files(tmp_path / "w", sentinel)[0]
    run = copy_run("run")
    RunPaths(run).weights("best").write_bytes(payload.read_bytes())
    assert_refused(cli("export", run), "best.safetensors is not a readable safetensors file")
    assert_refused(cli("evaluate", run), "best.safetensors is not a readable safetensors file")
    assert not (run / "model.onnx").exists()
    assert not sentinel.exists()


def _data_start(blob: bytes) -> int:
    """Offset of the first tensor byte: safetensors is an 8-byte header length, the JSON header, the data."""
    (length,) = struct.unpack("<Q", blob[:8])
    return 8 + length


def test_truncated_safetensors_are_refused(copy_run: Callable[[str], Path]) -> None:
    run = copy_run("run")
    best = RunPaths(run).weights("best")
    blob = best.read_bytes()
    start = _data_start(blob)
    cuts = sorted({0, 3, 8, 8 + (start - 8) // 2, start, start + (len(blob) - start) // 2, len(blob) - 1})
    for cut in cuts:
        best.write_bytes(blob[:cut])
        with pytest.raises(CheckpointError, match="not a readable safetensors file"):
            read_weights(best)
        with pytest.raises(CheckpointError, match="not a readable safetensors file"):
            load_state_dict_file(best)  # the reader of torchvision `weights:` files
    best.write_bytes(blob[: len(blob) // 2])
    assert_refused(cli("export", run), "best.safetensors is not a readable safetensors file", "truncated")
    assert_refused(cli("evaluate", run), "best.safetensors is not a readable safetensors file")
    assert_refused(cli("train", "--resume", run, "--set", "train.epochs=3", "--quiet"), "best.safetensors")
    report("truncated-safetensors", cuts=len(cuts), reader_refusals=2 * len(cuts), command_refusals=3)


def _flip(path: Path, offset: int, bit: int) -> bytes:
    blob = path.read_bytes()
    damaged = bytearray(blob)
    damaged[offset] ^= 1 << bit
    path.write_bytes(bytes(damaged))
    return blob


def test_a_bit_flip_in_weights_is_refused_by_export_evaluate_and_resume(copy_run: Callable[[str], Path]) -> None:
    rng = random.Random(7)
    refusals = 0
    for which in ("best", "last"):
        run = copy_run(f"run-{which}")
        path = RunPaths(run).weights(which)
        blob = path.read_bytes()
        _flip(path, rng.randrange(_data_start(blob), len(blob)), rng.randrange(8))
        damaged = f"{which}.safetensors is damaged: its content does not match the hash"
        assert_refused(cli("export", run, "--weights", which), damaged)
        assert_refused(cli("evaluate", run, "--weights", which), damaged)
        # Resuming reads the state, but checks the weight files first: a damaged best.safetensors
        # would otherwise surface only at the end of training, when the test set is run.
        assert_refused(cli("train", "--resume", run, "--set", "train.epochs=3", "--quiet"), damaged)
        refusals += 3
        assert not (run / "model.onnx").exists()
        assert len(RunPaths(run).metrics.read_text().splitlines()) == 2  # nothing was trained on
    report("bit-flip-commands", flipped_weight_files=2, command_refusals=refusals)


def test_a_bit_flip_in_the_training_state_is_refused_by_resume(copy_run: Callable[[str], Path]) -> None:
    """torch's zip container has no checksum over tensor bytes: the state's own hash catches a flip."""
    run = copy_run("run")
    state = RunPaths(run).state
    largest = max(load_state(state)["model"].values(), key=lambda t: t.numel())
    needle = largest.numpy().tobytes()[:16]
    blob = state.read_bytes()
    at = blob.index(needle)  # the first bytes of a weight tensor inside the zip
    _flip(state, at + 1, 3)
    assert torch.load(state, weights_only=True)["model"] is not None  # torch itself does not notice
    assert_refused(
        cli("train", "--resume", run, "--set", "train.epochs=3", "--quiet"),
        "last.state.pt is damaged: its content does not match the hash",
    )


def _tensors_equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)  # NaN == NaN here


@pytest.mark.slow
def test_random_bit_flips_anywhere_are_refused_or_harmless(copy_run: Callable[[str], Path]) -> None:
    """Flip one random bit of a checkpoint, many times: every flip is refused with a
    CheckpointError, or hit bytes that carry nothing (padding, a metadata note) so the file
    reads back identical. Never a traceback of another type, never altered weights."""
    rng = random.Random(2024)
    run = copy_run("run")
    figures = {}
    for name, path, read in (
        ("weights", RunPaths(run).weights("best"), read_weights),
        ("state", RunPaths(run).state, load_state),
    ):
        reference = read(path)
        blob = path.read_bytes()
        refused = harmless = 0
        for _ in range(300):
            damaged = bytearray(blob)
            damaged[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(damaged))
            try:
                again = read(path)
            except CheckpointError:
                refused += 1
                continue
            assert _tensors_equal(again, reference), f"a bit flip in {path.name} was read back as different data"
            harmless += 1
        path.write_bytes(blob)
        figures[f"{name}_refused"] = refused
        figures[f"{name}_harmless"] = harmless
        # the harmless ones hit zip/JSON padding, alignment and notes. 300 flips, 9 RNG seeds (2024, 0-7):
        # weights refused 295-300, state refused 203-242 (harmless 58-97), on this machine (2-core x86 CPU)
        assert refused > harmless
    report("bit-flips", flips=600, **figures)


def test_a_training_state_without_its_hash_is_refused(copy_run: Callable[[str], Path]) -> None:
    """A bit flip in the key's name (sha256 → sha246) drops the hash: that state is not trusted unchecked."""
    path = RunPaths(copy_run("run")).state
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["sha246"] = state.pop("sha256")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="damaged"):
        load_state(path)
