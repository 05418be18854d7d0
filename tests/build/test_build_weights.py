"""`model.weights`: a torchvision state_dict file loads strictly into a spec-built model by key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision

import cnnspec
from cnnspec.errors import CheckpointError
from cnnspec.spec.overrides import load_with_overrides
from cnnspec.validate import validate_file

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
    assert d.message.startswith(f"model.weights: {tmp_path / 'bad.pth'} cannot be loaded safely")
