"""The plugin's own tests: cnnspec's static figures agree with the module torch builds."""

from __future__ import annotations

import torch

import cnnspec

SPEC = """
name: cbam-check
model:
  input: {channels: 8, height: 6, width: 5}
  layers:
    - conv2d: {out_channels: 16, kernel_size: 3, padding: 1}
    - cbam: {id: attention, reduction: 4, kernel_size: 3}
    - global_avgpool
    - linear: {out_features: 3}
"""


def test_static_counts_and_tensors_equal_the_built_module() -> None:
    spec = cnnspec.loads(SPEC)
    graph = cnnspec.check(spec)
    model = cnnspec.build(spec)
    node = graph.node("attention")
    built = model.get_submodule("attention")
    assert node.params == sum(p.numel() for p in built.parameters()) == 16 * 4 * 2 + 2 * 9
    assert {k: tuple(v.shape) for k, v in built.state_dict().items()} == node.layer.tensors(node.input_shapes)
    assert tuple(model(torch.rand(2, 8, 6, 5)).shape) == (2, 3)


def test_attention_only_rescales_its_input() -> None:
    module = cnnspec.build(cnnspec.loads(SPEC)).get_submodule("attention")
    x = torch.rand(2, 16, 6, 5) + 0.1
    y = module(x)
    assert y.shape == x.shape
    assert bool(((y / x) > 0).all()) and bool(((y / x) < 1).all())  # two sigmoid gates in (0, 1)
