"""torchvision backbones: the static table against torchvision, weights from files, offline errors, freeze."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

import cnnspec
from cnnspec.builder.backbone import build_backbone
from cnnspec.errors import CheckpointError, ShapeError, SpecError
from cnnspec.layers.backbone import BACKBONES
from cnnspec.rundir.weights import save_weights
from cnnspec.spec.model import Spec
from tests.build._build_helpers import assert_agrees, make_spec, run_with_hooks

CHEAP = {"resnet18", "mobilenet_v3_small", "shufflenet_v2_x1_0"}


def backbone_spec(weights: str | Path, *, model: str = "resnet18", freeze: bool = False, size: int = 32) -> Spec:
    layers = f"""
    - torchvision: {{id: backbone, model: {model}, weights: "{weights}", freeze: {str(freeze).lower()}}}
    - linear: {{id: fc, out_features: 3}}
    """
    return make_spec(layers, (3, size, size))


# --- the static table -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in CHEAP else pytest.mark.slow) for n in sorted(BACKBONES)]
)
def test_backbone_table_matches_torchvision(name: str) -> None:
    facts = BACKBONES[name]
    model = build_backbone(name, "none", False, facts.classifier).eval()
    assert sum(p.numel() for p in model.parameters()) == facts.params
    for h, w in [(64, 64), (facts.min_size + 1, 80)]:  # a square and an odd, small, non-square input
        with torch.no_grad():
            assert tuple(model(torch.randn(2, 3, h, w)).shape) == (2, facts.features)
    # The MAC figure is torchvision's own (its weights metadata), so summary agrees with its docs.
    assert torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"] == pytest.approx(facts.gmacs_224)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in sorted(BACKBONES) if BACKBONES[n].min_size > 1])
def test_backbones_that_need_a_minimum_input_are_refused_below_it(name: str) -> None:
    smallest = BACKBONES[name].min_size
    model = build_backbone(name, "none", False, BACKBONES[name].classifier).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, smallest, smallest))  # fits
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 3, smallest - 1, smallest))
    cnnspec.check(backbone_spec("none", model=name, size=smallest))
    with pytest.raises(ShapeError, match=f"at least {smallest}"):
        cnnspec.check(backbone_spec("none", model=name, size=smallest - 1))


def test_backbone_in_a_spec_agrees_with_the_checker() -> None:
    graph = cnnspec.check(backbone_spec("none"))
    model = cnnspec.build(graph)
    assert_agrees(graph, model, run_with_hooks(graph, model, train=True))


# --- freeze -------------------------------------------------------------------------------


def test_freeze_stops_gradients_in_the_backbone_only() -> None:
    graph = cnnspec.check(backbone_spec("none", freeze=True))
    model = cnnspec.build(graph)
    assert not any(p.requires_grad for p in model.layer("backbone").parameters())
    assert all(p.requires_grad for p in model.layer("fc").parameters())
    assert graph.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad) == 512 * 3 + 3


def test_unfrozen_backbone_is_trainable() -> None:
    graph = cnnspec.check(backbone_spec("none"))
    model = cnnspec.build(graph)
    assert all(p.requires_grad for p in model.parameters())
    assert graph.trainable_params == graph.total_params


# --- weights from local files ---------------------------------------------------------------


def _reference(seed: int = 0, **kwargs: int) -> nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(**kwargs)


def _assert_backbone_holds(model: nn.Module, reference: nn.Module) -> None:
    got = model.layer("backbone").state_dict()  # type: ignore[operator]
    want = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k


def test_weights_from_a_full_model_pth(tmp_path: Path) -> None:
    reference = _reference()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    _assert_backbone_holds(cnnspec.build(backbone_spec(path)), reference)


def test_weights_from_a_cut_backbone_pt(tmp_path: Path) -> None:
    reference = _reference(1)
    path = tmp_path / "backbone.pt"
    torch.save({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}, path)
    _assert_backbone_holds(cnnspec.build(backbone_spec(path)), reference)


def test_weights_from_a_model_fine_tuned_for_other_classes(tmp_path: Path) -> None:
    """The classifier is cut off, so a head of another size does not stop the backbone loading."""
    reference = _reference(2, num_classes=7)
    path = tmp_path / "finetuned.pth"
    torch.save(reference.state_dict(), path)
    _assert_backbone_holds(cnnspec.build(backbone_spec(path)), reference)


def test_weights_from_safetensors(tmp_path: Path) -> None:
    reference = _reference(3)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(plain))
    _assert_backbone_holds(cnnspec.build(backbone_spec(plain)), reference)
    hashed = tmp_path / "hashed.safetensors"  # cnnspec's own format, with its content hash
    save_weights(reference, hashed)
    _assert_backbone_holds(cnnspec.build(backbone_spec(hashed)), reference)


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(CheckpointError, match="does not hold resnet18 weights"):
        cnnspec.build(backbone_spec(path))
    other = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), other)
    with pytest.raises(CheckpointError, match="keys do not match"):
        cnnspec.build(backbone_spec(other))


def test_a_pickled_module_is_refused_without_running_its_code(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), path)  # a pickled object, not a state_dict
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        cnnspec.build(backbone_spec(path))


def test_a_missing_weights_file_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no weights file") as info:
        cnnspec.build(backbone_spec(tmp_path / "nope.pth"))
    location = info.value.diagnostics[0].location
    assert location is not None and (location.file, location.line) == ("test.yaml", 5)


def test_an_unknown_weights_name_lists_the_choices() -> None:
    with pytest.raises(SpecError, match="no weights 'IMAGENET9K'") as info:
        cnnspec.build(backbone_spec("IMAGENET9K"))
    assert "IMAGENET1K_V1" in (info.value.diagnostics[0].hint or "")


# --- torchvision weights names without network -----------------------------------------------


def _network_reaches(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty torch hub cache and a short socket timeout, so a download fails fast instead of hanging."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if not torch.hub.get_dir().startswith(str(tmp_path)):
        pytest.skip("torch.hub.set_dir() was called in this process: cannot point the hub cache at an empty folder")
    if _network_reaches("download.pytorch.org"):
        pytest.skip("download.pytorch.org is reachable: this test needs a machine without network")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    yield tmp_path
    socket.setdefaulttimeout(previous)


@pytest.mark.parametrize("weights", ["DEFAULT", "IMAGENET1K_V1"])
def test_a_weights_name_without_network_asks_for_a_local_file(offline_hub: Path, weights: str) -> None:
    with pytest.raises(CheckpointError) as info:
        cnnspec.build(backbone_spec(weights))
    diagnostic = info.value.diagnostics[0]
    assert "cannot download" in diagnostic.message
    assert "resnet18-f37072fd.pth" in (diagnostic.hint or "")
    assert "local file" in (diagnostic.hint or "")
    assert diagnostic.location is not None and diagnostic.location.line == 5
    assert not any((offline_hub / "torch").rglob("*.pth"))  # nothing half-downloaded left behind
