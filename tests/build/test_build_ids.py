"""Every layer of a spec is in the built module, whatever its dotted id looks like.

torchvision's names repeat parts (`features.1.0.block.0.0`, `layers.8.0.layers.0`). The
property test draws ids from a small alphabet at every nesting level (group, repeat,
residual, block uses and the blocks' own layers), so parts repeat all the time, and checks
the built module against the static counts: parameters, state_dict size and names, and a
forward pass after `.double()` (a module left out of the tree is not moved by `.to()`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import cnnspec
from cnnspec.checker.expand import MODULE_ATTRIBUTES
from cnnspec.checker.graph import Graph
from cnnspec.spec.model import Spec
from tests.build._build_helpers import spec_text

# Modest by default (a few seconds); CNNSPEC_PROPERTY_EXAMPLES=2000 for a long hunt.
EXAMPLES = int(os.environ.get("CNNSPEC_PROPERTY_EXAMPLES", "100"))
# Parts that repeat across levels; "0"/"1" are what repeat copies are named too.
ALPHABET = ["a", "b", "c", "0", "1"]
Layer = dict[str, Any]  # {kind: params}, as in YAML


def static_tensor_names(graph: Graph) -> list[str]:
    names = []
    for node in graph.nodes:
        tensors = node.layer.tensors(node.input_shapes)
        assert tensors is not None, f"{node.kind} cannot name its tensors statically"
        names += [f"{node.id}.{local}" for local in tensors]
    return names


def assert_complete(graph: Graph) -> None:
    """The built module holds every static tensor, and .double() reaches every layer."""
    model = cnnspec.build(graph)
    state = model.state_dict()
    static = static_tensor_names(graph)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    for node in graph.nodes:  # each layer's module is that layer alone (`id: self` too)
        assert sum(p.numel() for p in model.layer(node.id).parameters()) == node.params, node.id
    assert len(state) == len(static)
    assert set(static) <= set(state)
    model.double().eval()
    x = torch.randn(2, *graph.input_shape, dtype=torch.float64)
    assert model(x).dtype == torch.float64


# --- the two specs that lost modules ---------------------------------------------------------------


def test_repeat_copies_named_like_their_layers_keep_every_module() -> None:
    spec = cnnspec.loads(
        spec_text(
            """
            - repeat: {id: r, n: 2, layers: [conv2d: {id: "0", out_channels: 4, kernel_size: 3, padding: 1},
                                             batchnorm2d: {id: "1"}]}
            """
        ),
        "t.yaml",
    )
    graph = cnnspec.check(spec)
    # by hand: conv 3→4, 3×3 with bias = 4·3·9 + 4 = 112; then 4→4: 4·4·9 + 4 = 148; two BNs of 4: 2·8
    assert graph.total_params == 112 + 148 + 8 + 8
    assert_complete(graph)


def test_a_nested_id_equal_to_its_ancestor_keeps_every_module() -> None:
    spec = cnnspec.loads(
        spec_text(
            """
            - group: {id: a, layers: [conv2d: {id: b, out_channels: 4, kernel_size: 1},
                                      group: {id: c, layers: [conv2d: {id: a, out_channels: 4, kernel_size: 1}]}]}
            """
        ),
        "t.yaml",
    )
    graph = cnnspec.check(spec)
    assert graph.total_params == (3 * 4 + 4) + (4 * 4 + 4)  # two 1×1 convs with bias, by hand
    assert_complete(graph)
    assert {"a.b.weight", "a.c.a.weight"} <= set(cnnspec.build(graph).state_dict())


def test_building_refuses_to_replace_a_module_already_built() -> None:
    graph = cnnspec.check(cnnspec.loads(spec_text("- conv2d: {id: a, out_channels: 4, kernel_size: 1}"), "t.yaml"))
    twice = dataclasses.replace(graph, nodes=[graph.nodes[0], graph.nodes[0]])
    with pytest.raises(RuntimeError, match="would replace a module already built"):
        cnnspec.build(twice)


# --- random nestings with repeating ids --------------------------------------------------------------


def leaf() -> st.SearchStrategy[Layer]:
    conv = st.fixed_dictionaries(
        {"out_channels": st.integers(1, 4), "kernel_size": st.sampled_from([1, 3])},
        optional={"stride": st.sampled_from([1, 1, 2]), "bias": st.booleans()},
    ).map(lambda p: {"conv2d": {**p, "padding": p["kernel_size"] // 2}})
    return st.one_of(conv, conv, st.just({"batchnorm2d": {}}), st.just({"relu": {}}))


def with_ids(draw: st.DrawFn, layers: list[Layer]) -> list[Layer]:
    """The layers of one scope, each with an id from ALPHABET (unique in the scope) or none."""
    ids = draw(st.lists(st.sampled_from([*ALPHABET, None]), min_size=len(layers), max_size=len(layers)))
    out, used = [], set()
    for layer, layer_id in zip(layers, ids, strict=True):
        ((kind, params),) = layer.items()
        if layer_id is not None and layer_id not in used:
            used.add(layer_id)
            params = {**params, "id": layer_id}
        out.append({kind: params})
    return out


def layer_list(item: st.SearchStrategy[Layer], max_size: int = 3) -> st.SearchStrategy[list[Layer]]:
    return st.composite(lambda draw: with_ids(draw, draw(st.lists(item, min_size=1, max_size=max_size))))()


def nested(block_names: list[str]) -> st.SearchStrategy[Layer]:
    """A leaf or sugar around more layers: group, repeat, residual, and uses of the named blocks.

    Every construct accepts any input channel count (convs infer in_channels, residual
    shortcuts are `auto`), so each drawn spec checks."""

    def extend(inner: st.SearchStrategy[Layer]) -> st.SearchStrategy[Layer]:
        inner_list = layer_list(inner)
        sugar = [
            inner_list.map(lambda ls: {"group": {"layers": ls}}),
            st.builds(lambda n, ls: {"repeat": {"n": n, "layers": ls}}, st.integers(1, 2), inner_list),
            st.builds(
                lambda body, act: {"residual": {"body": body, **({"activation": "relu"} if act else {})}},
                inner_list,
                st.booleans(),
            ),
        ]
        if block_names:
            sugar.append(st.sampled_from(block_names).map(lambda n: {"block": {"name": n}}))
        return st.one_of(*sugar)

    return st.recursive(leaf(), extend, max_leaves=8)


@st.composite
def spec_with_repeating_ids(draw: st.DrawFn) -> dict[str, Any]:
    blocks: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["blk", "unit"]), unique=True, max_size=2)):
        # A block's layers may use blocks defined before it (not itself: that is an error).
        blocks[name] = {"layers": draw(layer_list(nested(list(blocks))))}
    layers = draw(st.lists(nested(list(blocks)), min_size=1, max_size=4))
    if draw(st.booleans()):
        layers += [{"global_avgpool": {}}, {"linear": {"out_features": 3}}]
    layers = with_ids(draw, layers)
    channels, size = draw(st.integers(1, 3)), draw(st.sampled_from([4, 8]))
    model: dict[str, Any] = {"input": {"channels": channels, "height": size, "width": size}, "layers": layers}
    if blocks:
        model["blocks"] = blocks
    return {"name": "ids", "model": model}


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec_with_repeating_ids())
def test_every_static_tensor_is_built_whatever_the_ids(data: dict[str, Any]) -> None:
    text = json.dumps(data)  # JSON is YAML
    note(text)
    spec: Spec = cnnspec.loads(text, "ids.yaml")
    graph = cnnspec.check(spec)
    parts = [n.id.split(".") for n in graph.nodes]
    event("a part repeats an earlier one" if any(len(set(p)) < len(p) for p in parts) else "no part repeats")
    event("uses a block" if "blocks" in data["model"] else "no block")
    assert_complete(graph)


def test_the_checker_knows_every_attribute_of_a_built_module() -> None:
    """validate refuses ids that name an attribute of the built module (MODULE_ATTRIBUTES, written out
    without torch); here the list is checked against the real module's attributes."""
    graph = cnnspec.check(cnnspec.loads(spec_text("- relu: {id: only}"), "t.yaml"))
    model = cnnspec.build(graph)
    public = {name for name in set(dir(model)) | set(vars(model)) if not name.startswith("_")} - {"only"}
    assert public <= MODULE_ATTRIBUTES
