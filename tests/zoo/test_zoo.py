"""Every spec in specs/zoo/ is its torchvision model, layer by layer.

Each spec names the torchvision builder it matches in a header line, and optionally the
input side the test runs at (default 64; the architectures' adaptive pooling makes every
side above their minimum valid):

    # torchvision: inception_v3(aux_logits=False, init_weights=False)
    # test size: 75

Against the torchvision model (an independent source: it never reads the spec):

- the static parameter count equals torchvision's parameters;
- the static state_dict (names and shapes, from the checker, without torch) equals
  torchvision's, key for key; the built module's is checked by loading torchvision's file
  strictly (every key, both ways, and every shape);
- the static MACs equal the convolutions and matrix products torch's FlopCounterMode counts
  in torchvision's forward pass at the same input (a MAC is two of its FLOPs);
- with torchvision's weights saved to a file and loaded through `model.weights` (strictly),
  the logits at batch 2 in eval mode agree to 1e-5 times the largest logit (at least 1e-5
  absolute). The weights are first re-initialised so every activation is O(1): He-normal
  convolutions and linears, batch-norm statistics measured on random images, so the logits
  have a standard deviation near 1 (asserted) and a wrong layer cannot hide behind tiny values.

A spec added to specs/zoo/ joins the test by its header alone. Each torchvision model is built
once (a module-scoped fixture) and shared by the four checks.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnspec
from cnnspec.checker.graph import Graph
from cnnspec.spec.overrides import load_with_overrides

ROOT = Path(__file__).resolve().parents[2]
ZOO = sorted((ROOT / "specs" / "zoo").glob("*.yaml"))
BUILDER = re.compile(r"^# torchvision: (?P<call>.+?)\s*$", re.MULTILINE)
SIZE = re.compile(r"^# test size: (?P<side>\d+)\s*$", re.MULTILINE)
DEFAULT_SIDE = 64
BATCH = 2


def reference(path: Path) -> tuple[str, dict[str, Any], int]:
    """The torchvision builder's name and keyword arguments, and the test's input side, from the header."""
    text = path.read_text("utf-8")
    found = BUILDER.search(text)
    assert found, f"{path.name} has no '# torchvision: BUILDER(ARGS)' header line"
    call = ast.parse(found["call"], mode="eval").body
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.args, found["call"]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
    side = SIZE.search(text)
    return call.func.id, kwargs, int(side["side"]) if side else DEFAULT_SIDE


def reinitialise(model: nn.Module, side: int) -> None:
    """He-normal weights, small biases, batch-norm statistics measured on random images: O(1) activations.

    Every parameter and buffer is written here, so the model may come from the meta device
    (`to_empty`: torchvision's own initialisation, seconds for VGG, is skipped).
    """
    g = torch.Generator().manual_seed(0)
    norms = []
    written: set[int] = set()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.normal_(0.0, (2.0 / m.weight[0].numel()) ** 0.5, generator=g)
                written.add(id(m.weight))
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: one batch sets the statistics
                norms.append(m)
                written |= {id(b) for b in m.buffers()}
        for name, p in model.named_parameters():  # biases, norm scales and shifts, other learnt scales
            if id(p) not in written:
                (p.uniform_(-0.1, 0.1, generator=g) if name.endswith("bias") else p.uniform_(0.5, 1.5, generator=g))
        left = [name for name, b in model.named_buffers() if id(b) not in written]
        assert not left, f"reinitialise does not know these buffers: {left}"
        if norms:
            model.train()(torch.randn(4, 3, side, side, generator=g))
    for m in norms:
        m.momentum = 0.1
    model.eval()


@dataclass
class Pair:
    name: str
    side: int
    graph: Graph  # the spec at the test's input side, model.weights naming torchvision's weights
    torchvision: nn.Module


@pytest.fixture(scope="module", params=ZOO, ids=[p.stem for p in ZOO])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    path: Path = request.param
    name, kwargs, side = reference(path)
    try:  # on the meta device torchvision's own (slow) initialisation is skipped
        with torch.device("meta"):
            tv = getattr(torchvision.models, name)(**kwargs)
        tv = tv.to_empty(device="cpu")
    except NotImplementedError:  # RegNet's builder reads tensor values (`.tolist()`) while it builds
        tv = getattr(torchvision.models, name)(**kwargs)
    reinitialise(tv, side)
    # safetensors: VGG's 550 MB load in 0.1 s (a .pth takes 2 s; test_build_weights covers .pth)
    file = tmp_path_factory.mktemp("zoo") / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, file)
    size = [f"model.input.height={side}", f"model.input.width={side}"]
    graph = cnnspec.check(load_with_overrides(path, [*size, f"model.weights={file}"]))
    yield Pair(path.stem, side, graph, tv)
    file.unlink()


def test_the_zoo_is_there() -> None:
    names = {p.stem for p in ZOO}
    expected = set(
        [
            "alexnet",
            "vgg11_bn",
            "vgg16_bn",
            "resnet50",
            "resnext50_32x4d",
            "wide_resnet50_2",
            "densenet121",
            "squeezenet1_0",
            "googlenet",
            "inception_v3",
            "mobilenet_v2",
            "mobilenet_v3_small",
            "mobilenet_v3_large",
            "shufflenet_v2_x1_0",
            "mnasnet0_5",
            "efficientnet_b0",
            "regnet_x_400mf",
            "regnet_y_400mf",
            "convnext_tiny",
        ]
    )
    assert expected <= names, sorted(expected - names)


def test_parameter_count_equals_torchvisions(pair: Pair) -> None:
    assert pair.graph.total_params == sum(p.numel() for p in pair.torchvision.parameters())


def test_state_dict_keys_and_shapes_equal_torchvisions(pair: Pair) -> None:
    expected = {k: tuple(v.shape) for k, v in pair.torchvision.state_dict().items()}
    static: dict[str, tuple[int, ...]] = {}
    for node in pair.graph.nodes:
        tensors = node.layer.tensors(node.input_shapes)
        assert tensors is not None, node.id
        static |= {f"{node.id}.{k}": tuple(s) for k, s in tensors.items()}
    assert static == expected  # the built module's keys: the strict load in the logits test


def test_static_macs_equal_torchs_flop_counter(pair: Pair) -> None:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        pair.torchvision(torch.zeros(1, 3, pair.side, pair.side))
    assert pair.graph.macs * 2 == counter.get_total_flops()


def test_logits_equal_torchvisions_with_its_weights(pair: Pair) -> None:
    x = torch.randn(BATCH, 3, pair.side, pair.side, generator=torch.Generator().manual_seed(1))
    built = cnnspec.build(pair.graph).eval()  # loads model.weights strictly: every key, every shape
    with torch.no_grad():
        want = pair.torchvision(x)
        got = built(x)
    assert want.shape == got.shape == (BATCH, 1000)
    assert 0.1 < want.std().item() < 100  # O(1) logits: a wrong layer cannot hide behind tiny values
    bound = 1e-5 * max(1.0, want.abs().max().item())
    assert (got - want).abs().max().item() <= bound
