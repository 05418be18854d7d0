"""`inputs` of sugar layers resolve like those of plain layers: innermost scope first, forward too."""

from __future__ import annotations

import cnnspec
from tests.build._build_helpers import spec_text


def inputs_of(layers: str) -> dict[str, tuple[str, ...]]:
    graph = cnnspec.check(cnnspec.loads(spec_text(layers, (2, 6, 6)), "t.yaml"))
    return {node.id: node.inputs for node in graph.nodes}


def test_a_residual_may_read_a_layer_further_down() -> None:
    inputs = inputs_of(
        """
        - conv2d: {id: early, out_channels: 2, kernel_size: 1}
        - residual: {id: r, inputs: [later], body: [conv2d: {id: c, out_channels: 2, kernel_size: 1}]}
        - conv2d: {id: later, inputs: [early], out_channels: 2, kernel_size: 1}
        - add: {inputs: [r, later]}
        """
    )
    assert inputs["r.c"] == ("later",)
    assert inputs["r.downsample"][0] == "later"  # the shortcut reads the same layer


def test_a_sugar_layer_reads_the_innermost_layer_of_that_name_even_when_it_comes_later() -> None:
    inputs = inputs_of(
        """
        - conv2d: {id: a, out_channels: 2, kernel_size: 1}
        - group:
            id: g
            layers:
              - conv2d: {id: p, inputs: [a], out_channels: 2, kernel_size: 1}
              - residual: {id: r, inputs: [a], body: [conv2d: {id: c, out_channels: 2, kernel_size: 1}]}
              - conv2d: {id: a, inputs: [input], out_channels: 2, kernel_size: 1}
              - add: {inputs: [p, r]}
        """
    )
    assert inputs["g.p"] == ("g.a",)  # a plain layer: the group's own `a`
    assert inputs["g.r.c"] == ("g.a",)  # and the residual's body reads the same layer
