"""ONNX files whose external data would make onnxruntime read outside their folder.

A real exported cnnspec model is rewritten to keep its weights in an external file, and
that file's `location` is pointed at `../../etc/passwd`, an absolute path, a symlink out of
the folder, and so on. `cnnspec predict` and `cnnspec bench` must refuse each one before
any onnxruntime session exists: a spy subclass of `onnxruntime.InferenceSession` (the real
class, only counting) proves no session was created.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from cnnspec.deploy.exporter import export_run
from tests.reliability._reliability_helpers import assert_refused, cli, report

pytestmark = pytest.mark.slow  # one real export (the dynamo exporter) costs several seconds

Rewrite = Callable[[Path], str]


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("exported") / "model.onnx").path


def externalise(model_path: Path, folder: Path) -> Path:
    """A copy of the model in `folder` with every weight in folder/weights.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(model_path))
    target = folder / "model.onnx"
    # Small tensors (shapes, which onnxruntime needs inline) stay in the file; weights go out.
    onnx.save(model, str(target), save_as_external_data=True, location="weights.bin", size_threshold=128)
    return target


def point_at(model_path: Path, location: str) -> int:
    """Rewrite the external-data location of every externalised tensor; returns how many."""
    model = onnx.load(str(model_path), load_external_data=False)
    count = 0
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
                count += 1
    onnx.save(model, str(model_path))
    return count


def _dotdot(model: Path) -> str:
    return "../../etc/passwd"


def _absolute(model: Path) -> str:
    return "/etc/passwd"


def _absolute_to_own_weights(model: Path) -> str:
    return str((model.parent / "weights.bin").resolve())  # absolute, even pointing back inside


def _windows_dotdot(model: Path) -> str:
    return "..\\..\\secret\\weights.bin"


def _windows_drive(model: Path) -> str:
    return "C:\\Windows\\win.ini"


def _symlinked_file(model: Path) -> str:
    # The real weights, moved out of the folder: onnxruntime without a check would load them.
    outside = model.parent.parent / "elsewhere.bin"
    os.replace(model.parent / "weights.bin", outside)
    (model.parent / "weights.bin").symlink_to(outside)
    return "weights.bin"


def _symlinked_folder(model: Path) -> str:
    outside = model.parent.parent / "outside"
    outside.mkdir()
    os.replace(model.parent / "weights.bin", outside / "weights.bin")
    (model.parent / "data").symlink_to(outside, target_is_directory=True)
    return "data/weights.bin"


def _nul_byte(model: Path) -> str:
    return "weights.bin\x00../../etc/passwd"


HOSTILE: dict[str, tuple[Rewrite, str]] = {
    "../../etc/passwd": (_dotdot, "climbs out of the model's folder"),
    "/etc/passwd": (_absolute, "an absolute path"),
    "absolute path to its own weights": (_absolute_to_own_weights, "an absolute path"),
    "..\\..\\ (Windows)": (_windows_dotdot, "climbs out of the model's folder"),
    "C:\\ (Windows drive)": (_windows_drive, "an absolute path"),
    "symlinked file out of the folder": (_symlinked_file, "outside the model's folder"),
    "symlinked folder out of the folder": (_symlinked_folder, "outside the model's folder"),
    "NUL byte": (_nul_byte, "NUL byte"),
}


def image(folder: Path) -> Path:
    path = folder / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(path)
    return path


def test_a_well_formed_external_data_model_runs(exported: Path, tmp_path: Path, sessions: list[str]) -> None:
    """Control: the same rewrite with weights inside the folder predicts, through a counted session."""
    model = externalise(exported, tmp_path / "ok")
    result = cli("predict", model, image(tmp_path), "--device", "cpu", "--format", "json")
    assert result.code == 0, result.output
    assert sessions == [str(model)]


def test_hostile_external_data_is_refused_before_any_session(
    exported: Path, trained_run: Path, tmp_path: Path, sessions: list[str]
) -> None:
    picture = image(tmp_path)
    refused = 0
    for i, (case, (rewrite, reason)) in enumerate(HOSTILE.items()):
        model = externalise(exported, tmp_path / f"case{i}" / "a" / "b")
        assert point_at(model, rewrite(model)) > 0, case
        attempts = [
            ("predict", model, picture, "--device", "cpu"),
            ("predict", model, picture),  # auto: the CUDA probe would be a session too
            ("bench", model, "--batch", "1", "--seconds", "0", "--device", "cpu"),
        ]
        # A run directory whose model.onnx was replaced: bench takes the file it finds there.
        run = tmp_path / f"case{i}" / "run"
        shutil.copytree(trained_run, run)
        in_run = externalise(exported, run)
        assert point_at(in_run, rewrite(in_run)) > 0, case
        attempts.append(("bench", run, "--batch", "1", "--seconds", "0", "--device", "cpu"))
        for args in attempts:
            result = cli(*args)
            assert_refused(result, "refused", reason)
            refused += 1
        assert sessions == [], f"{case}: an onnxruntime session was created for {sessions}"
    report("hostile-onnx", locations=len(HOSTILE), commands_refused=refused, sessions_created=len(sessions))
