"""Names that match torchvision: `id: self`, repeat copies named PREFIX + index from `start`, ids with
'-' or written as numbers, a residual's `shortcut_id`, and `linear: {over: channels}`.

Each spec below is compared with the torchvision module it mirrors (built independently by
torchvision): state_dict keys and shapes equal, the static tensors equal the built state_dict, the
static parameter count equals the built one, and with torchvision's weights loaded strictly the
outputs agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.convnext import CNBlock
from torchvision.models.regnet import AnyStage, ResBottleneckBlock

import cnnspec
from cnnspec.checker.graph import Graph
from cnnspec.errors import CnnspecError
from tests.build.test_build_ids import assert_complete, static_tensor_names
from tests.build.test_build_ids import leaf as leaf_layer

EXAMPLES = int(os.environ.get("CNNSPEC_PROPERTY_EXAMPLES", "100"))


def graph_of(layers: str, channels: int = 8, size: int = 8, blocks: str = "") -> Graph:
    text = f"name: t\nmodel:\n  input: {{channels: {channels}, height: {size}, width: {size}}}\n"
    if blocks:
        text += "  blocks:\n" + "".join(f"    {line}\n" for line in blocks.strip("\n").splitlines())
    text += "  layers:\n" + "".join(f"    {line}\n" for line in layers.strip("\n").splitlines())
    return cnnspec.check(cnnspec.loads(text, "t.yaml"))


def assert_same_as(graph: Graph, reference: nn.Module, prefix: str, atol: float = 1e-5) -> None:
    """The spec's model under `prefix` is `reference`: same keys and shapes, same output with its weights."""
    torch.manual_seed(0)
    model = cnnspec.build(graph).eval()
    reference.eval()
    ours = model.state_dict()
    theirs = {f"{prefix}{k}": v for k, v in reference.state_dict().items()}
    assert sorted(ours) == sorted(theirs)  # (RegNet's proj comes after the body here, before it in torchvision)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert sorted(static_tensor_names(graph)) == sorted(ours)
    assert graph.total_params == sum(p.numel() for p in reference.parameters())
    model.load_state_dict(theirs, strict=True)
    x = torch.randn(2, *graph.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=atol, rtol=0)
    with FlopCounterMode(display=False) as counter:
        reference(x[:1])
    assert graph.macs == counter.get_total_flops() // 2
    assert_complete(graph)


CNBLOCK = """
cn:
  params: {dim: null}
  layers:
    - residual:
        body:
          - group:
              id: block
              layers:
                - conv2d: {id: 0, out_channels: $dim, kernel_size: 7, padding: 3, groups: $dim}
                - layernorm: {id: 2, over: channels, eps: 1.0e-6}
                - linear: {id: 3, over: channels, out_features: "${4 * dim}"}
                - gelu
                - linear: {id: 5, over: channels, out_features: $dim}
          - scale: {id: self, init: 0.5}
        shortcut: identity
"""


def test_a_scale_with_id_self_is_the_blocks_own_parameter_as_in_convnext() -> None:
    graph = graph_of("- block: {id: b, name: cn, args: {dim: 8}}", blocks=CNBLOCK)
    reference = CNBlock(8, layer_scale=0.5, stochastic_depth_prob=0.0)
    with torch.no_grad():  # a γ of 0.5 everywhere would not notice a transposed one
        reference.layer_scale.copy_(torch.rand_like(reference.layer_scale))
    assert_same_as(graph, reference, "b.")


def test_the_scale_takes_over_its_lists_module_whichever_is_built_first() -> None:
    # The scale first: the group's later layers are attached inside the scale's module.
    graph = graph_of(
        """
        - group:
            id: g
            layers:
              - scale: {id: self}
              - conv2d: {id: conv, out_channels: 8, kernel_size: 1}
        """
    )
    model = cnnspec.build(graph)
    assert list(model.state_dict()) == ["g.layer_scale", "g.conv.weight", "g.conv.bias"]
    assert type(model.g).__name__ == "LayerScale"
    assert_complete(graph)


@pytest.mark.parametrize("scale_first", [True, False])
def test_layer_of_a_scale_with_id_self_is_the_scale_alone_not_its_lists_module(scale_first: bool) -> None:
    scale_line = "- scale: {id: self, init: 0.5}"
    conv_line = "- conv2d: {id: conv, out_channels: 8, kernel_size: 1}"
    inner = [scale_line, conv_line] if scale_first else [conv_line, scale_line]
    graph = graph_of("- group:\n    id: g\n    layers:\n" + "".join(f"      {line}\n" for line in inner))
    model = cnnspec.build(graph).eval()
    scale = model.layer("g")
    # by hand: γ is 8×1×1; the conv beside it in the list has 8·8 + 8
    assert sum(p.numel() for p in scale.parameters()) == graph.node("g").params == 8
    assert list(scale.state_dict()) == ["layer_scale"]
    assert sum(p.numel() for p in model.get_submodule("g").parameters()) == 8 + 72  # the list's module
    assert sorted(model.state_dict()) == ["g.conv.bias", "g.conv.weight", "g.layer_scale"]  # names unchanged
    gamma = torch.rand(8, 1, 1)
    model.load_state_dict({**model.state_dict(), "g.layer_scale": gamma})
    assert torch.equal(scale.state_dict()["layer_scale"], gamma)  # the model's γ, not a copy
    outputs: list[torch.Tensor] = []
    scale.register_forward_hook(lambda module, args, out: outputs.append(out))
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        y = model(x)
        conv = model.layer("g.conv")
        expected = conv(x * gamma) if scale_first else conv(x) * gamma
    torch.testing.assert_close(y, expected)
    assert len(outputs) == 1  # a hook on the layer sees it run
    model.load_state_dict({**model.state_dict(), "g.layer_scale": torch.ones(8, 1, 1)}, assign=True)
    assert scale.layer_scale is model.get_submodule("g").layer_scale  # a replaced tensor shows too


def test_linear_over_channels_is_nn_linear_at_every_position() -> None:
    graph = graph_of("- linear: {id: fc, over: channels, out_features: 5}", size=3)
    linear = nn.Linear(8, 5)
    model = cnnspec.build(graph).eval()
    model.load_state_dict({f"fc.{k}": v for k, v in linear.state_dict().items()}, strict=True)
    x = torch.randn(2, 8, 3, 3)
    expected = torch.stack([torch.stack([linear(x[:, :, i, j]) for j in range(3)], -1) for i in range(3)], -2)
    torch.testing.assert_close(model(x), expected)
    assert graph.node("fc").output_shape == (5, 3, 3)
    assert graph.macs == 8 * 5 * 9


REGNET_BLOCK = """
res:
  params: {w: null, s: 1, g: 4}
  layers:
    - residual:
        body:
          - group:
              id: f
              layers:
                - group: {id: a, layers: [conv2d: {id: 0, out_channels: $w, kernel_size: 1, bias: false},
                                          batchnorm2d: {id: 1}, relu: {id: 2}]}
                - group: {id: b, layers: [conv2d: {id: 0, out_channels: $w, kernel_size: 3, stride: $s,
                                                   padding: 1, groups: "${w // g}", bias: false},
                                          batchnorm2d: {id: 1}, relu: {id: 2}]}
                - group: {id: c, layers: [conv2d: {id: 0, out_channels: $w, kernel_size: 1, bias: false},
                                          batchnorm2d: {id: 1}]}
        shortcut_id: proj
        activation: relu
"""


def test_repeat_copies_named_from_a_prefix_and_start_as_regnets_anystage() -> None:
    graph = graph_of(
        """
        - group:
            id: block1
            layers:
              - block: {id: block1-0, name: res, args: {w: 16, s: 2}}
              - repeat: {id: self, n: 2, start: 1, prefix: block1-, layers: [block: {name: res, args: {w: 16}}]}
        """,
        blocks=REGNET_BLOCK,
    )
    reference = AnyStage(
        8, 16, 2, 3, ResBottleneckBlock, nn.BatchNorm2d, nn.ReLU, 4, 1.0, None, stage_index=1
    )  # group width 4: 16 // 4 = 4 groups
    assert_same_as(graph, reference, "block1.")


def test_a_repeat_with_a_prefix_names_its_copies_under_its_own_id() -> None:
    graph = graph_of("- repeat: {id: r, n: 2, prefix: b-, layers: [conv2d: {out_channels: 8, kernel_size: 1}]}")
    assert [n.id for n in graph.nodes] == ["r.b-0", "r.b-1"]
    assert_complete(graph)


def test_numbers_as_ids_and_zero_copies_make_torchvisions_shifting_indexes() -> None:
    # MobileNetV3's InvertedResidual without an expansion: block.0 is the depthwise conv, block.1 the SE,
    # block.2 the projection; with `e: 1` an expansion conv comes first and the others move up by one.
    blocks = """
    ir:
      params: {e: 0, se: 1, exp: 16, out: 8}
      layers:
        - group:
            id: block
            layers:
              - repeat: {id: self, n: $e, layers: [group: {layers: [conv2d: {id: 0, out_channels: $exp,
                          kernel_size: 1, bias: false}, batchnorm2d: {id: 1}, relu: {id: 2}]}]}
              - group: {id: $e, layers: [conv2d: {id: 0, out_channels: $exp, kernel_size: 3, padding: 1,
                        groups: $exp, bias: false}, batchnorm2d: {id: 1}, relu: {id: 2}]}
              - repeat: {id: self, n: $se, start: "${e + 1}", layers: [squeeze_excite: {squeeze_channels: 8}]}
              - group: {id: "${e + se + 1}", layers: [conv2d: {id: 0, out_channels: $out, kernel_size: 1,
                        bias: false}, batchnorm2d: {id: 1}]}
    """
    layers = """
    - block: {id: a, name: ir, args: {e: 0, se: 1, exp: 8}}
    - block: {id: b, name: ir, args: {e: 1, se: 0}}
    - block: {id: c, name: ir, args: {e: 1, se: 1}}
    """
    graph = graph_of(layers, blocks=blocks)
    weights = sorted({k.rsplit(".", 1)[0] for k in static_tensor_names(graph)})
    assert weights == [
        "a.block.0.0", "a.block.0.1", "a.block.1.fc1", "a.block.1.fc2", "a.block.2.0", "a.block.2.1",
        "b.block.0.0", "b.block.0.1", "b.block.1.0", "b.block.1.1", "b.block.2.0", "b.block.2.1",
        "c.block.0.0", "c.block.0.1", "c.block.1.0", "c.block.1.1", "c.block.2.fc1", "c.block.2.fc2",
        "c.block.3.0", "c.block.3.1",
    ]  # fmt: skip
    assert_complete(graph)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_a_repeat_of_n_copies_counts_n_times_its_layers(n: int) -> None:
    graph = graph_of(f"- repeat: {{id: r, n: {n}, layers: [conv2d: {{out_channels: 8, kernel_size: 1}}]}}\n- relu")
    assert graph.total_params == n * (8 * 8 + 8)  # a 1×1 conv 8 → 8 with bias, by hand
    assert_complete(graph)


def test_ids_with_dashes_reach_the_built_module() -> None:
    graph = graph_of("- group: {id: trunk-1, layers: [conv2d: {id: block1-0, out_channels: 8, kernel_size: 1}]}")
    model = cnnspec.build(graph)
    assert list(model.state_dict()) == ["trunk-1.block1-0.weight", "trunk-1.block1-0.bias"]
    assert model.get_submodule("trunk-1.block1-0") is model.layer("trunk-1.block1-0")


def test_regnet_style_blocks_in_torchvisions_partial_form_keep_relu_after_the_sum() -> None:
    # the same block as above with an identity shortcut (stride 1, same width): no proj, relu after the sum
    graph = graph_of("- block: {id: x, name: res, args: {w: 8}}", blocks=REGNET_BLOCK)
    reference = ResBottleneckBlock(8, 8, 1, nn.BatchNorm2d, partial(nn.ReLU), 4, 1.0, None)
    assert_same_as(graph, reference, "x.")


# --- random nestings with `id: self`, numbered and prefixed copies ------------------------------------

NAMES = ["a", "0", "1", "self", None]


def with_names(draw: st.DrawFn, layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for layer in layers:
        ((kind, params),) = layer.items()
        name = draw(st.sampled_from(NAMES))
        out.append({kind: {**params, "id": name} if name is not None else params})
    return out


def named_nesting() -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.one_of(leaf_layer(), st.just({"scale": {"init": 0.5}}), st.just({"scale": {"id": "self"}}))

    def extend(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        items = st.composite(lambda draw: with_names(draw, draw(st.lists(inner, min_size=1, max_size=3))))()
        repeat = st.builds(
            lambda n, start, prefix, ls: {"repeat": {"n": n, "start": start, "prefix": prefix, "layers": ls}},
            st.integers(0, 2),
            st.integers(0, 2),
            st.sampled_from(["", "b-"]),
            items,
        )
        return st.one_of(items.map(lambda ls: {"group": {"layers": ls}}), repeat)

    return st.recursive(leaf, extend, max_leaves=8)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(named_nesting(), min_size=1, max_size=3).map(lambda ls: {"group": {"id": "g", "layers": ls}}))
def test_every_spec_the_checker_accepts_builds_every_static_tensor(group: dict[str, Any]) -> None:
    """Whatever `id: self`, starts and prefixes do to the names, a spec that checks loses no module
    and attaches every tensor where the static names say; one that does not check says why, located."""
    text = json.dumps({"name": "n", "model": {"input": {"channels": 2, "height": 4, "width": 4}, "layers": [group]}})
    note(text)
    try:
        graph = cnnspec.check(cnnspec.loads(text, "n.yaml"))
    except CnnspecError as exc:
        assert all(d.location is not None and d.location.line > 0 for d in exc.diagnostics)
        event("refused")
        return
    event("self used" if '"self"' in text else "no self")
    assert_complete(graph)


def test_train_refuses_a_repeat_copy_named_like_a_module_attribute_before_making_the_run(tmp_path: Path) -> None:
    """`prefix: bfloat, start: 16` names copy 0 `bfloat16`, a method of nn.Module: train stops at the
    check with the located error, before it makes a run folder (it used to crash in the builder)."""
    spec = tmp_path / "n12.yaml"
    spec.write_text(
        "name: n12\nmodel:\n  input: {channels: 1, height: 8, width: 8}\n  layers:\n"
        "    - repeat: {id: r, n: 1, start: 16, prefix: bfloat,\n"
        "               layers: [{conv2d: {out_channels: 8, kernel_size: 1}}]}\n"
        "    - flatten\n    - linear: {out_features: 10}\n"
        "data: {dataset: {name: digits}, batch_size: 128}\noptimizer: {name: adamw, lr: 5.0e-3}\n"
        "train: {epochs: 1, seed: 0}\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnnspec", "train", str(spec), "--out", str(run_dir), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"{spec}:5:48: error: copy 0 of this repeat would be named 'bfloat16'" in done.stderr + done.stdout
    assert not run_dir.exists()
