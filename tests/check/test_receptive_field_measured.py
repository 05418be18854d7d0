"""The static receptive field equals the one measured on the built model by perturbing its input.

The measurement never reads the checker: every weight is made positive and every bias
zero, so with a positive input no activation clips and every input pixel inside a
window raises the output (max-pooling included). Raising one input row (or column)
at a time, the rows that change the output value at the centre of a layer's map span
its receptive field. The input is large enough that the centre's window is never cut
by the border, where the static figure (the window's full side) and the measured one
part ways by definition.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnspec
from cnnspec.checker.graph import Graph
from tests.build._build_helpers import make_spec

SPECS: dict[str, tuple[tuple[int, int, int], str]] = {
    "strided_and_dilated": (
        (2, 61, 57),
        """
        - conv2d: {out_channels: 3, kernel_size: [3, 5], stride: [2, 1], padding: 1}
        - relu
        - conv2d: {out_channels: 3, kernel_size: 3, dilation: [2, 3], padding: 2}
        - maxpool2d: {kernel_size: 3, stride: 2, padding: 1, dilation: 2}
        - conv2d: {out_channels: 2, kernel_size: [1, 3], stride: [1, 2]}
        """,
    ),
    "pooling": (
        (1, 64, 64),
        """
        - avgpool2d: {kernel_size: [2, 3], stride: 2, ceil_mode: true}
        - maxpool2d: {kernel_size: 2}
        - conv2d: {out_channels: 2, kernel_size: 3, padding: same}
        - avgpool2d: {kernel_size: 3, stride: 1}
        """,
    ),
    "merge_of_branches": (
        (2, 48, 48),
        """
        - conv2d: {id: a, out_channels: 2, kernel_size: 5, padding: 2}
        - conv2d: {id: b, out_channels: 2, kernel_size: 3, stride: 2, padding: 1, inputs: [input]}
        - conv2d: {id: c, out_channels: 2, kernel_size: 3, padding: 1, inputs: [a]}
        - maxpool2d: {id: d, kernel_size: 2, inputs: [c]}
        - add: {inputs: [b, d]}
        - concat: {inputs: [b, d]}
        """,
    ),
    "kinds_of_todays_cnns": (
        # Kinds whose window is the identity, mixed with convolutions that move it: a slice of one
        # branch times a shuffled other branch, PReLU, layer scale and stochastic depth (eval).
        (4, 40, 40),
        """
        - conv2d: {id: a, out_channels: 6, kernel_size: 5, padding: 2}
        - hardswish
        - conv2d: {id: b, out_channels: 6, kernel_size: 3, stride: 2, padding: 1, inputs: [input]}
        - channel_shuffle: {id: shuffled, groups: 3}
        - slice: {id: part, chunks: 2, index: 1, inputs: [a]}
        - maxpool2d: {id: pooled, kernel_size: 2, inputs: [part]}
        - prelu: {id: p, num_parameters: channels, inputs: [shuffled]}
        - slice: {id: first_three, start: 0, end: 3}
        - multiply: {id: m, inputs: [first_three, pooled]}
        - scale: {init: 0.5}
        - mish
        - drop_path: {p: 0.3}
        - conv2d: {out_channels: 2, kernel_size: 3, dilation: 2, padding: 2}
        - softplus
        """,
    ),
    "residual_stage": (
        (3, 64, 64),
        """
        - conv2d: {out_channels: 4, kernel_size: 7, stride: 2, padding: 3}
        - residual:
            id: r
            body:
              - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
              - batchnorm2d
              - relu
              - conv2d: {out_channels: 8, kernel_size: 3, stride: 2, padding: 1}
        """,
    ),
}


def _make_monotone(model: nn.Module) -> None:
    """Positive weights and zero biases: every input pixel a layer sees raises its output."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) + 0.5)


def _ends(indices: torch.Tensor) -> tuple[int, int]:
    return int(indices.min()), int(indices.max())


def _measured(graph: Graph, model: nn.Module) -> dict[str, tuple[int, int]]:
    """Per image-shaped layer: the rows and columns of input that move its centre output, as a span."""
    c, h, w = graph.input_shape
    base = torch.ones(1, c, h, w, dtype=torch.float64)
    rows = base.repeat(h, 1, 1, 1)
    cols = base.repeat(w, 1, 1, 1)
    for i in range(h):
        rows[i, :, i, :] += 1.0
    for j in range(w):
        cols[j, :, :, j] += 1.0
    batch = torch.cat([base, rows, cols])
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for node in graph.nodes:
        if len(node.output_shape) == 3:

            def hook(_m: nn.Module, _i: object, out: torch.Tensor, node_id: str = node.id) -> None:
                outputs[node_id] = out

            handles.append(model.layer(node.id).register_forward_hook(hook))  # type: ignore[operator]
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    spans = {}
    for node_id, out in outputs.items():
        centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2]  # (batch, C)
        moved = (centre[1:] - centre[0]).abs().amax(dim=1) > 1e-9 * centre[0].abs().amax()
        moved_rows = torch.nonzero(moved[:h]).flatten()
        moved_cols = torch.nonzero(moved[h:]).flatten()
        (top, bottom), (left, right) = _ends(moved_rows), _ends(moved_cols)
        assert 0 < top <= bottom < h - 1, f"{node_id}: window cut by the border"
        assert 0 < left <= right < w - 1, f"{node_id}: window cut by the border"
        spans[node_id] = (bottom - top + 1, right - left + 1)
    return spans


@pytest.mark.parametrize("name", sorted(SPECS))
def test_static_receptive_field_equals_the_span_measured_by_perturbation(name: str) -> None:
    shape, layers = SPECS[name]
    spec = make_spec(layers, shape)
    graph = cnnspec.check(spec)
    model = cnnspec.build(spec).double().eval()
    _make_monotone(model)
    measured = _measured(graph, model)
    static = {n.id: n.receptive_field for n in graph.nodes if n.id in measured}
    assert len(measured) >= 4
    assert static == measured
