# mypy: allow-untyped-defs
"""The specs in specs/ against the seed's hand-written PyTorch models and torchvision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import cnnspec
from cnnspec.builder.graph_module import SpecModule
from cnnspec.checker.graph import Graph

SPECS = Path(__file__).resolve().parents[2] / "specs"


# --- the seed's models, verbatim (§3 and §5) -------------------------------------------


class SmallCNN(nn.Module):
    def __init__(self, in_ch=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 32, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2)  # halves H,W
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 8 * 8, 128),  # adjust if input size differs
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))  # /2
        x = self.pool(F.relu(self.bn2(self.conv2(x))))  # /4
        x = self.head(x)
        return x


def conv_block(in_ch, out_ch, k=3, s=1, p=1):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=k, stride=s, padding=p, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class DeeperCNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = conv_block(3, 64)
        self.stage1 = nn.Sequential(conv_block(64, 64), nn.MaxPool2d(2))  # /2
        self.stage2 = nn.Sequential(conv_block(64, 128), nn.MaxPool2d(2))  # /4
        self.stage3 = nn.Sequential(conv_block(128, 256), nn.MaxPool2d(2))  # /8
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.head(x)
        return x


# --- helpers ----------------------------------------------------------------------------


def n_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build(name: str) -> tuple[Graph, SpecModule]:
    spec = cnnspec.load(SPECS / f"{name}.yaml")
    return cnnspec.check(spec), cnnspec.build(spec)


def randomise(model: nn.Module, seed: int = 0) -> None:
    """Give every parameter and batch-norm statistic a random value, so a mis-wired copy shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if "running_var" in name:
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)  # variances stay positive
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1)


def copy_in_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy weights between models whose state_dicts list the same tensors in the same order under other names."""
    s, d = src.state_dict(), dst.state_dict()
    assert [tuple(t.shape) for t in s.values()] == [tuple(t.shape) for t in d.values()]
    dst.load_state_dict(dict(zip(d.keys(), s.values(), strict=True)))


# --- parameter counts -----------------------------------------------------------------


def test_resnet18_matches_torchvision_parameter_for_parameter() -> None:
    graph, model = build("resnet18")
    reference = torchvision.models.resnet18()
    assert graph.total_params == n_params(model) == n_params(reference) == 11_689_512
    assert graph.output_shape == (1000,)
    # Same names and shapes, key for key (ids follow torchvision's module names).
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in reference.state_dict().items()
    }
    with torch.no_grad():
        assert tuple(model.eval()(torch.zeros(2, 3, 224, 224)).shape) == (2, 1000)


def test_resnet18_computes_what_torchvision_computes() -> None:
    _, model = build("resnet18")
    reference = torchvision.models.resnet18()
    randomise(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    reference.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(x) - reference(x)).abs().max().item()
    assert diff <= 1e-5


def test_small_cnn_is_the_seeds_small_cnn() -> None:
    graph, model = build("small_cnn")
    seed = SmallCNN()
    assert graph.total_params == n_params(model) == n_params(seed) == 545_290
    randomise(seed)
    copy_in_order(seed, model)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), seed.eval()(x), atol=1e-5, rtol=1e-5)


def test_deeper_cnn_is_the_seeds_deeper_cnn() -> None:
    graph, model = build("deeper_cnn")
    seed = DeeperCNN()
    assert graph.total_params == n_params(model) == n_params(seed) == 410_826
    # The named block conv_block(in_ch, out_ch) keeps the seed's nesting: stem.conv, stem.bn.
    assert "stem.conv.weight" in model.state_dict()
    randomise(seed)
    copy_in_order(seed, model)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), seed.eval()(x), atol=1e-5, rtol=1e-5)


def test_keras_cnn_has_keras_trainable_count() -> None:
    """Keras reports 94,730 trainable parameters for §8's model (moving statistics are buffers here)."""
    graph, model = build("keras_cnn")
    assert graph.trainable_params == n_params(model, trainable_only=True) == 94_730
    bn_stats = sum(b.numel() for name, b in model.named_buffers() if "running_" in name)
    assert graph.trainable_params + bn_stats == 94_922  # Keras' "Total params"


@pytest.mark.parametrize("name", sorted(p.stem for p in SPECS.glob("*.yaml") if p.stem != "resnet18_transfer"))
def test_every_spec_builds_with_the_checked_shapes_and_counts(name: str) -> None:
    graph, model = build(name)
    assert n_params(model) == graph.total_params
    x = torch.randn(2, *graph.input_shape)
    with torch.no_grad():
        assert tuple(model.eval()(x).shape) == (2, *graph.output_shape)


def test_cnnspec_build_stays_callable_after_submodules_are_imported() -> None:
    import cnnspec.builder.graph_module  # binds the attribute cnnspec.builder (no longer cnnspec.build) to the package

    model = cnnspec.build(cnnspec.load(SPECS / "digits.yaml"))
    assert isinstance(model, SpecModule)


def test_resnet18_at_an_odd_size_checks_and_runs_like_torchvision() -> None:
    """At 200 px layer3 turns 25×25 into 13×13: the auto shortcut is a 1×1 stride-2 conv, as torchvision's."""
    text = (SPECS / "resnet18.yaml").read_text().replace("height: 224, width: 224", "height: 200, width: 200")
    graph = cnnspec.check(cnnspec.loads(text, "resnet18_200.yaml"))
    assert graph.node("layer3.0.downsample").output_shape == (256, 13, 13)
    model = cnnspec.build(graph)
    reference = torchvision.models.resnet18()
    randomise(reference, seed=3)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 200, 200)
    with torch.no_grad():
        assert (model.eval()(x) - reference.eval()(x)).abs().max().item() <= 1e-5
