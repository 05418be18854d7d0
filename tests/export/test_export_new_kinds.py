"""Every layer kind of issue 12 exports to ONNX, and onnxruntime's output matches torch's."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

import cnnspec
from cnnspec.deploy.gate import FP32_BOUND
from cnnspec.deploy.onnx_export import to_onnx
from tests.build._build_helpers import make_spec

# One small network through every new kind (and add's broadcast), trained-looking weights not needed.
LAYERS = """
- conv2d: {out_channels: 12, kernel_size: 3, padding: 1}
- layernorm: {over: channels, eps: 1.0e-6}
- relu6
- hardswish
- prelu: {num_parameters: channels}
- squeeze_excite: {id: se, reduction: 4, activation: silu, gate: hardsigmoid}
- channel_shuffle: {id: shuffled, groups: 3}
- slice: {id: left, chunks: 2, index: 0}
- slice: {id: right, start: 6, end: 12, inputs: [shuffled]}
- mish: {inputs: [right]}
- hardtanh: {min_val: -2.0, max_val: 2.0}
- softplus: {beta: 2.0}
- hardsigmoid
- scale: {id: gamma, init: 0.5}
- drop_path: {id: dropped, p: 0.3}
- multiply: {id: gated, inputs: [left, dropped]}
- adaptive_avgpool2d: {id: per_channel, output_size: 1}
- add: {inputs: [gated, per_channel]}
- repeat:
    id: blocks
    n: 2
    layers:
      - residual: {drop_path: {start: 0.0, end: 0.2}, body: [conv2d: {out_channels: 6, kernel_size: 3, padding: 1}]}
- global_avgpool
- linear: {out_features: 4}
"""


def test_a_network_of_every_new_kind_exports_and_onnxruntime_matches_torch() -> None:
    graph = cnnspec.check(make_spec(LAYERS, (3, 8, 8)))
    kinds = {n.kind for n in graph.nodes}
    new = {"relu6", "hardtanh", "hardswish", "hardsigmoid", "mish", "prelu", "softplus", "layernorm", "slice"}
    assert new | {"channel_shuffle", "scale", "drop_path", "multiply"} <= kinds
    model = cnnspec.build(graph).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # away from the defaults, so a dropped parameter or wrong axis shows in the output
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    exported = to_onnx(model, graph.input_shape, opset=18)
    assert exported.exporter == "dynamo", exported.dynamo_error
    session = ort.InferenceSession(exported.model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch axis is dynamic
        x = np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)
        got = session.run(["logits"], {"input": x})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        assert got.shape == want.shape == (batch, 4)
        assert np.abs(got - want).max() <= FP32_BOUND
