"""A residual's `activation` expands to a layer of that kind, reading the sum."""

from __future__ import annotations

import pytest

import cnnspec
from tests.build._build_helpers import spec_text


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "leaky_relu"])
def test_a_residual_activation_is_a_layer_of_the_named_kind(activation: str) -> None:
    layers = f"""
    - residual:
        id: res
        activation: {activation}
        body: [conv2d: {{out_channels: 2, kernel_size: 1}}]
    """
    graph = cnnspec.check(cnnspec.loads(spec_text(layers, (2, 4, 4)), "t.yaml"))
    nodes = {node.id: node for node in graph.nodes}
    assert nodes[f"res.{activation}"].kind == activation
    assert nodes[f"res.{activation}"].inputs == ("res.add",)
