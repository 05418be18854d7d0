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
    "layernorm": ((4, 5, 6), "- layernorm\n- flatten\n- layernorm: {elementwise_affine: false}", ""),
    "groupnorm": ((6, 4, 4), "- groupnorm: {num_groups: 3}\n- groupnorm: {num_groups: 2, affine: false}", ""),
    "relu": ((3, 4, 4), "- relu", ""),
    "leaky_relu": ((3, 4, 4), "- leaky_relu: {negative_slope: 0.2}", ""),
    "gelu": ((3, 4, 4), "- gelu: {approximate: tanh}", ""),
    "silu": ((3, 4, 4), "- silu", ""),
    "elu": ((3, 4, 4), "- elu: {alpha: 0.5}", ""),
    "sigmoid": ((3, 4, 4), "- sigmoid", ""),
    "tanh": ((3, 4, 4), "- tanh", ""),
    "softmax": ((3, 4, 4), "- softmax\n- global_avgpool\n- softmax", ""),
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
