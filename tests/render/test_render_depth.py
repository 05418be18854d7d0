"""`summary --depth`, a torchvision backbone shown layer by layer, and memory counted as torchinfo counts it.

The summary is static (no torch); these tests hold it against the real thing: torchinfo on the
built model, and torchvision's ResNet-18 run with forward hooks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchinfo
import torchvision

import cnnspec
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"


def summary_json(*args: str) -> dict:
    result = run_cli("summary", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_memory_is_what_torchinfo_reports_for_the_built_model() -> None:
    memory = summary_json(str(SPECS / "small_cnn.yaml"), "--batch", "4")["memory"]
    model = cnnspec.build(cnnspec.load(SPECS / "small_cnn.yaml"))
    stats = torchinfo.summary(model, input_size=(4, 3, 32, 32), verbose=0, device="cpu")
    assert memory["batch_size"] == 4
    assert memory["forward_backward_bytes"] == stats.total_output_bytes
    assert memory["params_bytes"] == stats.total_param_bytes
    # The input batch's bytes; torchinfo adds the size of the Python object holding them (64 bytes here).
    assert memory["input_bytes"] == torch.zeros(4, 3, 32, 32).nbytes
    assert 0 <= stats.total_input - memory["input_bytes"] <= 128
    assert memory["total_bytes"] == memory["input_bytes"] + stats.total_output_bytes + stats.total_param_bytes
    assert memory["estimated"] is False


def test_memory_text_line_names_the_batch() -> None:
    result = run_cli("summary", str(SPECS / "small_cnn.yaml"), "--batch", "4", env={"COLUMNS": "200"})
    memory = summary_json(str(SPECS / "small_cnn.yaml"), "--batch", "4")["memory"]
    assert f"Forward/backward pass size: {memory['forward_backward_bytes'] / 1e6:.2f} MB" in result.stdout
    assert "(fp32, batch 4, counted as torchinfo counts)" in result.stdout


def test_depth_folds_deeper_layers_into_their_row() -> None:
    full = summary_json(str(SPECS / "resnet18.yaml"))
    one = summary_json(str(SPECS / "resnet18.yaml"), "--depth", "1")
    two = summary_json(str(SPECS / "resnet18.yaml"), "--depth", "2")
    assert [r["id"] for r in one["layers"]] == [
        *("conv1", "bn1", "relu_2", "maxpool", "layer1", "layer2", "layer3", "layer4"),
        *("avgpool", "flatten_9", "fc"),
    ]
    rows = {r["id"]: r for r in one["layers"]}
    inside = [r for r in full["layers"] if r["id"].startswith("layer3.")]
    assert rows["layer3"]["params"] == sum(r["params"] for r in inside) == 2_099_712
    assert rows["layer3"]["kind"] == f"{len(inside)} layers"
    assert rows["layer3"]["output_shape"] == [256, 14, 14] and rows["layer3"]["stride"] == 16
    assert [r["id"] for r in two["layers"] if r["id"].startswith("layer2")] == ["layer2.0", "layer2.1"]
    for folded in (one, two):
        assert sum(r["params"] for r in folded["layers"]) == full["total_params"]
        assert sum(r["macs"] for r in folded["layers"]) == folded["macs"] == full["macs"]


def test_a_backbone_row_shows_its_stride() -> None:
    rows = {r["id"]: r for r in summary_json(str(SPECS / "resnet18_transfer.yaml"))["layers"]}
    assert rows["backbone"]["kind"] == "torchvision" and rows["backbone"]["stride"] == 32
    assert rows["fc"]["stride"] == 32


def test_a_backbone_expands_into_torchvisions_own_layers() -> None:
    report = summary_json(str(SPECS / "resnet18_transfer.yaml"), "--depth", "4")
    rows = {r["id"]: r for r in report["layers"]}
    inner = [r for r in report["layers"] if r["id"].startswith("backbone.")]
    assert sum(r["params"] for r in inner) == 11_176_512  # torchvision's ResNet-18 without its fc
    assert report["estimated_macs"] == []  # counted layer by layer: no estimate left
    # The real backbone at the spec's input (3×64×64), every leaf module's output shape by its name.
    seen: dict[str, list[int]] = {}

    def record(name: str):  # a forward hook that keeps the module's output shape (and returns None)
        return lambda module, inputs, output: seen.__setitem__(name, list(output.shape[1:]))

    net = torchvision.models.resnet18()
    for name, module in net.named_modules():
        if name and not list(module.children()) and any(True for _ in module.parameters()):
            module.register_forward_hook(record(name))
    with torch.no_grad():
        net(torch.zeros(1, 3, 64, 64))
    compared = [name for name in seen if f"backbone.{name}" in rows]
    # Every conv and batch norm but the cut-off fc; a downsample's conv and batch norm are one `shortcut` row.
    assert compared == [n for n in seen if ".downsample." not in n and n != "fc"] and len(compared) == 34
    for name in compared:
        assert rows[f"backbone.{name}"]["output_shape"] == seen[name], name
    for stage in (2, 3, 4):
        shortcut = rows[f"backbone.layer{stage}.0.downsample"]
        assert shortcut["kind"] == "shortcut" and shortcut["output_shape"] == seen[f"layer{stage}.0.downsample.1"]
    assert rows["backbone.layer4.1.bn2"]["stride"] == 32 and rows["backbone.layer2.0.conv1"]["stride"] == 8
    assert rows["backbone.layer4.1.bn2"]["params"] == sum(p.numel() for p in net.layer4[1].bn2.parameters())


@pytest.mark.parametrize("depth", ["1", "2"])
def test_depth_keeps_a_backbone_folded_above_its_layers(depth: str) -> None:
    rows = summary_json(str(SPECS / "resnet18_transfer.yaml"), "--depth", depth)["layers"]
    ids = [r["id"] for r in rows]
    if depth == "1":
        assert ids == ["backbone", "fc"] and rows[0]["kind"] == "torchvision"
    else:
        assert ids[:5] == ["backbone.conv1", "backbone.bn1", "backbone.relu", "backbone.maxpool", "backbone.layer1"]
        assert rows[4]["kind"] == "16 layers" and rows[4]["params"] == 147_968
