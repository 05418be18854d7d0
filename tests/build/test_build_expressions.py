"""A spec written with vars and expressions builds the network its static counts describe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnspec.builder.graph_module import build
from cnnspec.checker.checker import check
from cnnspec.spec.overrides import load_with_overrides
from tests.build._build_helpers import make_spec

FAMILY = Path(__file__).resolve().parents[1] / "fixtures" / "expressions" / "family.yaml"


@pytest.mark.parametrize("overrides", [[], ["vars.width=0.5"], ["vars.width=0.75", "vars.depth=1.4"]])
def test_family_spec_built_parameters_equal_static_counts(overrides: list[str]) -> None:
    spec = load_with_overrides(FAMILY, overrides)
    graph = check(spec)
    model = build(graph)
    assert sum(p.numel() for p in model.parameters()) == sum(n.params for n in graph.nodes)
    logits = model.eval()(torch.zeros(2, *spec.model.input.shape))
    assert tuple(logits.shape) == (2, 10)


@pytest.mark.parametrize(
    ("kind", "kernel", "stride", "dilation"),
    [
        ("conv2d", 3, 1, 1),
        ("conv2d", 5, 2, 1),
        ("conv2d", [7, 3], 3, 2),
        ("maxpool2d", 3, 2, 1),
        ("avgpool2d", 5, 2, 1),
    ],
)
def test_padding_auto_gives_torch_the_symmetric_padding(
    kind: str, kernel: int | list[int], stride: int, dilation: int
) -> None:
    params = f"kernel_size: {kernel}, stride: {stride}, padding: auto"
    if kind == "conv2d":
        params += f", out_channels: 4, dilation: {dilation}"
    spec = make_spec(f"- {kind}: {{{params}}}", shape=(3, 17, 16))
    graph = check(spec)
    module = build(graph)
    out = module(torch.zeros(1, 3, 17, 16))
    k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    expected_padding = tuple(dilation * (side - 1) // 2 for side in k)
    torch_module = next(
        m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d))
    )
    padding = torch_module.padding if isinstance(torch_module.padding, tuple) else (torch_module.padding,) * 2
    assert tuple(padding) == expected_padding
    assert tuple(out.shape[1:]) == graph.nodes[-1].output_shape
    # ⌈H/s⌉ per side, the point of symmetric padding for an odd kernel
    assert tuple(out.shape[2:]) == (-(-17 // stride), -(-16 // stride))
