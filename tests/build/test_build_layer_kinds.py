"""Every registered layer kind is built and run forward; torch agrees with the checker on every layer."""

from __future__ import annotations

import pytest
import torch

import cnnspec
from cnnspec.layers import REGISTRY
from cnnspec.layers.backbone import BACKBONES
from tests.build._build_helpers import assert_agrees, make_spec, run_with_hooks

# kind -> (input shape C,H,W; layers; blocks). Each uses non-default parameters where the kind has them.
EXAMPLES: dict[str, tuple[tuple[int, int, int], str, str]] = {
    "conv2d": (
        (3, 11, 9),
        """
        - conv2d: {out_channels: 6, kernel_size: [3, 2], stride: [2, 1], padding: [1, 0], dilation: [1, 2], groups: 3}
        - conv2d: {out_channels: 4, kernel_size: 4, padding: same, padding_mode: reflect, bias: false}
        - conv2d: {out_channels: 5, kernel_size: 3, padding: valid, padding_mode: circular, in_channels: 4}
        """,
        "",
    ),
    "conv_transpose2d": (
        (4, 5, 6),
        """
        - conv_transpose2d: {out_channels: 6, kernel_size: 3, stride: 2, padding: 1, output_padding: 1, groups: 2}
        - conv_transpose2d: {out_channels: 2, kernel_size: [2, 3], dilation: 2, bias: false}
        """,
        "",
    ),
    "linear": ((2, 3, 3), "- flatten\n- linear: {out_features: 7}\n- linear: {out_features: 3, bias: false}", ""),
    "batchnorm2d": ((4, 5, 5), "- batchnorm2d\n- batchnorm2d: {affine: false, eps: 1.0e-3, momentum: 0.2}", ""),
    "batchnorm1d": ((2, 3, 3), "- flatten\n- batchnorm1d\n- batchnorm1d: {affine: false}", ""),
    "layernorm": (
        (4, 5, 6),
        """
        - layernorm
        - layernorm: {over: channels, eps: 1.0e-6}
        - layernorm: {over: channels, elementwise_affine: false, normalized_shape: [4]}
        - flatten
        - layernorm: {elementwise_affine: false}
        """,
        "",
    ),
    "groupnorm": ((6, 4, 4), "- groupnorm: {num_groups: 3}\n- groupnorm: {num_groups: 2, affine: false}", ""),
    "relu": ((3, 4, 4), "- relu", ""),
    "leaky_relu": ((3, 4, 4), "- leaky_relu: {negative_slope: 0.2}", ""),
    "gelu": ((3, 4, 4), "- gelu: {approximate: tanh}", ""),
    "silu": ((3, 4, 4), "- silu", ""),
    "elu": ((3, 4, 4), "- elu: {alpha: 0.5}", ""),
    "sigmoid": ((3, 4, 4), "- sigmoid", ""),
    "tanh": ((3, 4, 4), "- tanh", ""),
    "softmax": ((3, 4, 4), "- softmax\n- global_avgpool\n- softmax", ""),
    "relu6": ((3, 4, 4), "- relu6", ""),
    "hardtanh": ((3, 4, 4), "- hardtanh: {min_val: -0.5, max_val: 2.0}", ""),
    "hardswish": ((3, 4, 4), "- hardswish", ""),
    "hardsigmoid": ((3, 4, 4), "- hardsigmoid", ""),
    "mish": ((3, 4, 4), "- mish", ""),
    "softplus": ((3, 4, 4), "- softplus: {beta: 2.0, threshold: 5.0}", ""),
    "prelu": (
        (3, 4, 4),
        "- prelu\n- prelu: {num_parameters: channels, init: 0.1}\n- prelu: {num_parameters: 3}\n"
        "- flatten\n- prelu: {num_parameters: channels}",
        "",
    ),
    "drop_path": (
        (3, 4, 4),
        """
        - drop_path: {p: 0.2}
        - repeat: {id: ramp, n: 3, layers: [drop_path: {p: {start: 0.0, end: 0.5}}]}
        """,
        "",
    ),
    "scale": ((3, 4, 4), "- scale\n- scale: {init: 0.5}\n- flatten\n- scale: {init: 2.0}", ""),
    "dropout": ((3, 4, 4), "- dropout: {p: 0.3}", ""),
    "dropout2d": ((3, 4, 4), "- dropout2d: {p: 0.3}", ""),
    "identity": ((3, 4, 4), "- identity", ""),
    "maxpool2d": (
        (2, 11, 10),
        """
        - maxpool2d: {kernel_size: 3, stride: 2, padding: 1, dilation: 2, ceil_mode: true}
        - maxpool2d: {kernel_size: 2}
        """,
        "",
    ),
    "avgpool2d": (
        (2, 11, 10),
        "- avgpool2d: {kernel_size: [3, 2], stride: 2, padding: 1, ceil_mode: true, count_include_pad: false}",
        "",
    ),
    "adaptive_avgpool2d": ((2, 7, 5), "- adaptive_avgpool2d: {output_size: [3, 2]}", ""),
    "adaptive_maxpool2d": ((2, 7, 5), "- adaptive_maxpool2d: {output_size: 4}", ""),
    "global_avgpool": ((5, 7, 3), "- global_avgpool", ""),
    "flatten": ((2, 3, 4), "- flatten", ""),
    "upsample": (
        (2, 3, 4),
        "- upsample: {scale_factor: [2, 3]}\n- upsample: {size: [7, 5], mode: bilinear, align_corners: true}",
        "",
    ),
    "add": (
        (4, 6, 6),
        """
        - conv2d: {id: a, out_channels: 4, kernel_size: 3, padding: 1}
        - conv2d: {id: b, out_channels: 4, kernel_size: 1, inputs: [input]}
        - add: {inputs: [a, b, input]}
        """,
        "",
    ),
    "multiply": (
        (4, 6, 6),
        """
        - conv2d: {id: a, out_channels: 4, kernel_size: 3, padding: 1}
        - global_avgpool: {id: v}
        - adaptive_avgpool2d: {id: per_channel, output_size: 1, inputs: [a]}
        - conv2d: {id: per_position, out_channels: 1, kernel_size: 1, inputs: [a]}
        - adaptive_avgpool2d: {id: one, output_size: 1, inputs: [per_position]}
        - multiply: {id: m, inputs: [per_channel, a, per_position, one, input]}
        - global_avgpool: {id: mv}
        - linear: {id: lone, out_features: 1, inputs: [v]}
        - multiply: {inputs: [mv, v, lone]}
        """,
        "",
    ),
    "slice": (
        (6, 4, 4),
        """
        - slice: {id: a, start: 1, end: 4}
        - slice: {id: b, end: 2, inputs: [input]}
        - slice: {id: c, chunks: 3, index: 2, inputs: [input]}
        - concat: {inputs: [a, b, c]}
        - flatten
        - slice: {start: 10}
        """,
        "",
    ),
    "channel_shuffle": ((6, 3, 4), "- channel_shuffle: {groups: 3}\n- channel_shuffle: {groups: 1}", ""),
    "squeeze_excite": (
        (8, 5, 5),
        """
        - squeeze_excite: {id: se, reduction: 4}
        - squeeze_excite: {id: wide, squeeze_channels: 3, activation: silu, gate: hardsigmoid}
        """,
        "",
    ),
    "concat": (
        (3, 6, 6),
        """
        - conv2d: {id: a, out_channels: 2, kernel_size: 3, padding: 1}
        - maxpool2d: {id: b, kernel_size: 3, stride: 1, padding: 1, inputs: [input]}
        - concat: {id: cat, inputs: [a, b, input]}
        - global_avgpool: {id: ga}
        - flatten: {id: fl, inputs: [cat]}
        - concat: {inputs: [ga, fl]}
        """,
        "",
    ),
    "residual": (
        (4, 8, 8),
        """
        - residual:
            id: same
            activation: relu
            body: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1}, batchnorm2d]
        - residual:
            id: down
            body: [conv2d: {out_channels: 8, kernel_size: 3, stride: 2, padding: 1}]
        - residual:
            id: explicit
            activation: gelu
            body: [conv2d: {out_channels: 6, kernel_size: 3, padding: 1}]
            shortcut: [conv2d: {out_channels: 6, kernel_size: 1}]
        - residual:
            id: ident
            shortcut: identity
            body: [relu]
        """,
        "",
    ),
    "repeat": (
        (3, 8, 8),
        """
        - repeat: {id: single, n: 2, layers: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1}]}
        - repeat:
            id: multi
            n: 3
            layers: [conv2d: {id: conv, out_channels: 4, kernel_size: 3, padding: 1}, batchnorm2d: {id: bn}, relu]
        """,
        "",
    ),
    "block": (
        (3, 8, 8),
        """
        - block: {id: stem, name: cbr, args: {out_ch: 6}}
        - block: {id: down, name: cbr, args: {out_ch: 8, s: 2}}
        - block: {id: single, name: one}
        """,
        """
        cbr:
          params: {out_ch: null, k: 3, s: 1, p: 1}
          layers:
            - conv2d: {id: conv, out_channels: $out_ch, kernel_size: $k, stride: $s, padding: $p, bias: false}
            - batchnorm2d: {id: bn}
            - relu
        one:
          layers: [conv2d: {out_channels: 2, kernel_size: 1}]
        """,
    ),
    "group": (
        (3, 8, 8),
        """
        - group:
            id: stage
            layers:
              - conv2d: {id: conv, out_channels: 4, kernel_size: 3}
              - group: {id: inner, layers: [relu: {id: act}, maxpool2d: {id: pool, kernel_size: 2}]}
        """,
        "",
    ),
    "torchvision": (
        (3, 32, 32),
        """
        - torchvision: {id: backbone, model: resnet18, weights: none, freeze: true}
        - linear: {id: fc, out_features: 4}
        """,
        "",
    ),
}

SUGAR_NODES = {  # node ids each sugar example must produce: names trace back to the YAML
    "residual": {"same.add", "same.relu", "down.downsample", "explicit.shortcut.conv2d_0", "ident.add"},
    "repeat": {"single.0", "single.1", "multi.0.conv", "multi.2.bn"},
    "block": {"stem.conv", "stem.bn", "down.conv", "single"},
    "group": {"stage.conv", "stage.inner.act", "stage.inner.pool"},
    "squeeze_excite": {f"{se}.{part}" for se in ("se", "wide") for part in ("avgpool", "fc1", "fc2", "multiply")},
}


def test_every_registered_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(REGISTRY)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_layer_kind_builds_and_agrees_with_the_checker(kind: str, train: bool) -> None:
    shape, layers, blocks = EXAMPLES[kind]
    spec = make_spec(layers, shape, blocks)
    graph = cnnspec.check(spec)
    model = cnnspec.build(graph)
    if REGISTRY[kind].sugar:
        assert SUGAR_NODES[kind] <= {n.id for n in graph.nodes}
    else:
        assert kind in {n.kind for n in graph.nodes}
    observed = run_with_hooks(graph, model, train=train)
    assert_agrees(graph, model, observed)
    assert torch.isfinite(observed.output).all()


def test_state_dict_keys_follow_the_dotted_ids() -> None:
    shape, layers, blocks = EXAMPLES["repeat"]
    model = cnnspec.build(make_spec(layers, shape, blocks))
    assert {"single.0.weight", "multi.0.conv.weight", "multi.2.bn.running_mean"} <= set(model.state_dict())


def test_residual_auto_shortcut_is_a_projection_only_when_the_shape_changes() -> None:
    shape, layers, blocks = EXAMPLES["residual"]
    model = cnnspec.build(make_spec(layers, shape, blocks))
    keys = set(model.state_dict())
    assert {"down.downsample.0.weight", "down.downsample.1.running_var"} <= keys  # torchvision's names
    assert not any(k.startswith("same.downsample") for k in keys)


def test_frozen_backbone_trains_only_the_head() -> None:
    shape, layers, blocks = EXAMPLES["torchvision"]
    graph = cnnspec.check(make_spec(layers, shape, blocks))
    model = cnnspec.build(graph)
    assert graph.trainable_params == 512 * 4 + 4
    assert graph.total_params == BACKBONES["resnet18"].params + 512 * 4 + 4
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in model.layer("backbone").parameters())
    assert all(p.grad is not None for p in model.layer("fc").parameters())


def test_a_merge_may_read_the_same_layer_twice() -> None:
    spec = make_spec("- conv2d: {id: a, out_channels: 3, kernel_size: 1}\n- add: {inputs: [a, a]}", (3, 4, 4))
    model = cnnspec.build(spec)
    x = torch.randn(1, 3, 4, 4)
    conv = model.layer("a")
    torch.testing.assert_close(model(x), 2 * conv(x))


def test_an_id_that_clashes_with_a_module_attribute_is_refused_before_building() -> None:
    spec = make_spec("- conv2d: {id: forward, out_channels: 3, kernel_size: 1}", (3, 4, 4))
    with pytest.raises(cnnspec.ShapeError, match="forward") as info:
        cnnspec.build(spec)
    location = info.value.diagnostics[0].location
    assert location is not None and location.file == "test.yaml" and location.line == 5


def test_inputs_may_name_a_sugar_layer_meaning_its_output() -> None:
    spec = make_spec(
        """
        - residual: {id: res, activation: relu, body: [conv2d: {out_channels: 3, kernel_size: 3, padding: 1}]}
        - group: {id: grp, layers: [conv2d: {out_channels: 3, kernel_size: 1}]}
        - concat: {inputs: [res, grp]}
        """,
        (3, 6, 6),
    )
    graph = cnnspec.check(spec)
    assert graph.node(graph.output).inputs == ("res.relu", "grp.conv2d_0")
    model = cnnspec.build(graph)
    assert_agrees(graph, model, run_with_hooks(graph, model))


# --- the new kinds against torch/torchvision references (issue 12) --------------------------------


def _built(layers: str, shape: tuple[int, int, int]) -> cnnspec.SpecModule:
    model = cnnspec.build(make_spec(layers, shape))
    return model.eval()


X = torch.randn(2, 6, 5, 4, generator=torch.Generator().manual_seed(1)) * 4  # spans every activation's kinks


@pytest.mark.parametrize(
    ("layer", "reference"),
    [  # hand-written definitions, not torch's modules
        ("relu6", lambda x: x.clamp(0, 6)),
        ("hardtanh: {min_val: -0.5, max_val: 2.0}", lambda x: x.clamp(-0.5, 2.0)),
        ("hardswish", lambda x: x * (x + 3).clamp(0, 6) / 6),
        ("hardsigmoid", lambda x: (x + 3).clamp(0, 6) / 6),
        ("mish", lambda x: x * torch.tanh(torch.log1p(torch.exp(x)))),
        (
            "softplus: {beta: 2.0, threshold: 5.0}",
            lambda x: torch.where(2 * x > 5, x, torch.log1p(torch.exp(2 * x)) / 2),
        ),
        ("prelu: {init: 0.1}", lambda x: torch.where(x >= 0, x, 0.1 * x)),
    ],
    ids=lambda v: v.split(":")[0] if isinstance(v, str) else "",
)
def test_activation_equals_its_definition(layer: str, reference: object) -> None:
    model = _built(f"- {layer}", (6, 5, 4))
    with torch.no_grad():
        torch.testing.assert_close(model(X), reference(X))  # type: ignore[operator]


def test_prelu_per_channel_has_one_learnt_slope_per_channel() -> None:
    model = _built("- prelu: {id: p, num_parameters: channels}", (6, 5, 4))
    slopes = torch.arange(6, dtype=torch.float32) / 10
    model.load_state_dict({"p.weight": slopes})  # the torch name, one slope per channel
    with torch.no_grad():
        torch.testing.assert_close(model(X), torch.where(X >= 0, X, slopes.view(1, 6, 1, 1) * X))
    assert cnnspec.check(make_spec("- prelu: {num_parameters: channels}", (6, 5, 4))).total_params == 6


def test_layernorm_over_channels_matches_torchvision_convnext_layernorm2d() -> None:
    from torchvision.models.convnext import LayerNorm2d

    reference = LayerNorm2d(6, eps=1e-6)
    with torch.no_grad():  # non-trivial affine so a swapped weight/bias or axis shows
        reference.weight.copy_(torch.linspace(0.5, 2, 6))
        reference.bias.copy_(torch.linspace(-1, 1, 6))
    model = _built("- layernorm: {id: ln, over: channels, eps: 1.0e-6}", (6, 5, 4))
    model.layer("ln").load_state_dict(reference.state_dict())  # strict: the keys are weight and bias
    assert set(model.layer("ln").state_dict()) == {"weight", "bias"}
    small = X * 1e-3  # a variance (1.6e-5) near eps, so eps shows in the output
    with torch.no_grad():
        torch.testing.assert_close(model(X), reference(X))
        torch.testing.assert_close(model(small), reference(small))
    # by definition: zero mean and unit variance over C at every position (before the affine)
    plain = _built("- layernorm: {over: channels, elementwise_affine: false}", (6, 5, 4))
    with torch.no_grad():
        y = plain(X)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 5, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 5, 4), atol=1e-3, rtol=0)


def test_multiply_and_add_broadcast_per_channel_per_position_and_scalar() -> None:
    layers = """
    - adaptive_avgpool2d: {id: c, output_size: 1}
    - conv2d: {id: s, out_channels: 1, kernel_size: 1, inputs: [input]}
    - adaptive_avgpool2d: {id: one, output_size: 1, inputs: [s]}
    - multiply: {id: m, inputs: [c, input, s, one]}
    - add: {inputs: [m, c, s, one]}
    """
    model = _built(layers, (6, 5, 4))
    with torch.no_grad():
        c = X.mean(dim=(2, 3), keepdim=True)  # (2, 6, 1, 1)
        s = model.layer("s")(X)  # (2, 1, 5, 4)
        one = s.mean(dim=(2, 3), keepdim=True)  # (2, 1, 1, 1)
        torch.testing.assert_close(model(X), c * X * s * one + c + s + one)


def test_slice_takes_a_channel_range_or_one_of_n_chunks() -> None:
    model = _built(
        """
        - slice: {id: r, start: 1, end: 4}
        - slice: {id: k, chunks: 3, index: 1, inputs: [input]}
        - concat: {inputs: [r, k]}
        """,
        (6, 5, 4),
    )
    with torch.no_grad():
        torch.testing.assert_close(model(X), torch.cat([X[:, 1:4], X.chunk(3, dim=1)[1]], dim=1))


@pytest.mark.parametrize("groups", [2, 3])
def test_channel_shuffle_matches_torchvision_shufflenet(groups: int) -> None:
    from torchvision.models.shufflenetv2 import channel_shuffle

    model = _built(f"- channel_shuffle: {{groups: {groups}}}", (6, 5, 4))
    with torch.no_grad():
        out = model(X)
    torch.testing.assert_close(out, channel_shuffle(X, groups))
    torch.testing.assert_close(out, torch.nn.ChannelShuffle(groups)(X))


def test_scale_is_convnext_layer_scale() -> None:
    from torchvision.models.convnext import CNBlock

    block = CNBlock(6, layer_scale=1e-6, stochastic_depth_prob=0.0)
    model = _built("- scale: {id: ls}", (6, 5, 4))
    ours = model.layer("ls").state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {"layer_scale": tuple(block.layer_scale.shape)}
    torch.testing.assert_close(ours["layer_scale"], block.layer_scale.detach())  # 1e-6 everywhere
    half = _built("- scale: {id: ls, init: 0.5}", (6, 5, 4)).layer("ls").state_dict()["layer_scale"]
    torch.testing.assert_close(half, torch.full((6, 1, 1), 0.5))
    gamma = torch.linspace(-1, 1, 6).view(6, 1, 1)
    model.layer("ls").load_state_dict({"layer_scale": gamma})
    with torch.no_grad():
        torch.testing.assert_close(model(X), X * gamma)


def test_drop_path_is_the_identity_in_eval_and_drops_whole_rows_in_training() -> None:
    layers = "- drop_path: {p: 0.5}"
    model = _built(layers, (6, 5, 4))
    x = torch.randn(64, 6, 5, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x), x) and torch.equal(model(x), x)  # deterministic: the no-drop path
        model.train()
        torch.manual_seed(3)
        y = model(x)
    dropped = (y == 0).flatten(1).all(dim=1)
    kept = ~dropped
    assert 0 < int(dropped.sum()) < 64  # p = 0.5 over 64 rows: both happen (seeded)
    torch.testing.assert_close(y[kept], x[kept] / 0.5)  # kept rows are rescaled by 1/(1 − p)
    from torchvision.ops import stochastic_depth

    torch.manual_seed(3)
    torch.testing.assert_close(y, stochastic_depth(x, 0.5, "row", training=True))


def test_drop_path_ramps_linearly_across_repeat_copies() -> None:
    spec = make_spec(
        """
        - repeat:
            id: stage
            n: 5
            layers:
              - residual: {drop_path: {start: 0.1, end: 0.3}, body: [conv2d: {out_channels: 3, kernel_size: 1}]}
        - repeat:
            id: inner
            n: 2
            layers: [repeat: {id: deep, n: 3, layers: [drop_path: {p: {start: 0.0, end: 0.4}}]}]
        """,
        (3, 4, 4),
    )
    model = cnnspec.build(spec)
    stage = [model.layer(f"stage.{i}.stochastic_depth").p for i in range(5)]
    assert stage == pytest.approx([0.1, 0.15, 0.2, 0.25, 0.3])
    # the innermost repeat decides: each of the 2 outer copies ramps over its own 3
    deep = [model.layer(f"inner.{o}.deep.{i}").p for o in range(2) for i in range(3)]
    assert deep == pytest.approx([0.0, 0.2, 0.4] * 2)


@pytest.mark.parametrize(
    ("layer", "torchvision_args"),
    [
        ("squeeze_excite: {id: se, reduction: 4}", {"squeeze_channels": 2}),
        (
            "squeeze_excite: {id: se, squeeze_channels: 3, activation: silu, gate: hardsigmoid}",
            {"squeeze_channels": 3, "activation": torch.nn.SiLU, "scale_activation": torch.nn.Hardsigmoid},
        ),
    ],
    ids=["reduction", "width"],
)
def test_squeeze_excite_matches_torchvision(layer: str, torchvision_args: dict[str, object]) -> None:
    from torchvision.ops import SqueezeExcitation

    torch.manual_seed(4)
    reference = SqueezeExcitation(8, **torchvision_args).eval()  # type: ignore[arg-type]
    model = _built(f"- {layer}", (8, 5, 4))
    ours = {k.removeprefix("se."): v for k, v in model.state_dict().items()}
    assert set(ours) == set(reference.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    model.load_state_dict({f"se.{k}": v for k, v in reference.state_dict().items()})
    x = torch.randn(2, 8, 5, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


LARGEST_FLOAT32 = "3.4028234663852886e+38"


@pytest.mark.parametrize(
    "layer",
    [
        "scale: {init: L}",
        "prelu: {init: -L}",
        "hardtanh: {min_val: -L, max_val: L}",
        "softplus: {beta: L, threshold: L}",
        "elu: {alpha: L}",
    ],
)
def test_a_float_setting_up_to_float32_s_largest_builds_and_one_beyond_is_refused_by_validate(layer: str) -> None:
    model = _built(f"- {layer.replace('L', LARGEST_FLOAT32)}", (6, 5, 4))  # torch takes it: the bound is torch's
    assert isinstance(model, torch.nn.Module)
    with pytest.raises(cnnspec.SpecError, match="must be a finite number within float32's range"):
        make_spec(f"- {layer.replace('L', '3.5e+38')}", (6, 5, 4))  # torch: "cannot be converted ... overflow"
