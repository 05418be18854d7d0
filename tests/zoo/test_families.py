"""A family spec with `vars` is its torchvision variants: `--set vars.…` gives each one's model.

specs/zoo/efficientnet_b0.yaml is EfficientNet b0–b3 by width, depth and resolution (as
torchvision's _efficientnet_conf); mobilenet_v2.yaml takes torchvision's width_mult, mnasnet0_5.yaml
its alpha. Against the torchvision builder (built on the meta device: only names and shapes are
read): the static parameter count, and the static state_dict names and shapes, key for key, and
the static MACs against FlopCounterMode at the variant's resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import cnnspec
from cnnspec.spec.overrides import load_with_overrides

ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"

VARIANTS = [
    ("efficientnet_b0.yaml", ["vars.depth=1.1", "vars.resolution=240"], "efficientnet_b1", {}),
    ("efficientnet_b0.yaml", ["vars.width=1.1", "vars.depth=1.2", "vars.resolution=260"], "efficientnet_b2", {}),
    ("efficientnet_b0.yaml", ["vars.width=1.2", "vars.depth=1.4", "vars.resolution=300"], "efficientnet_b3", {}),
    ("mobilenet_v2.yaml", ["vars.width=0.75"], "mobilenet_v2", {"width_mult": 0.75}),
    ("mobilenet_v2.yaml", ["vars.width=1.4"], "mobilenet_v2", {"width_mult": 1.4}),
    ("mnasnet0_5.yaml", ["vars.alpha=1.0"], "mnasnet1_0", {}),
    ("mnasnet0_5.yaml", ["vars.alpha=1.3"], "mnasnet1_3", {}),
]


@pytest.mark.parametrize(("spec", "sets", "builder", "kwargs"), VARIANTS, ids=lambda v: str(v))
def test_a_family_spec_with_its_vars_set_is_the_torchvision_variant(
    spec: str, sets: list[str], builder: str, kwargs: dict[str, Any]
) -> None:
    graph = cnnspec.check(load_with_overrides(ZOO / spec, sets))
    with torch.device("meta"):
        reference = getattr(torchvision.models, builder)(**kwargs)
    assert graph.total_params == sum(p.numel() for p in reference.parameters())
    static = {f"{n.id}.{k}": s for n in graph.nodes for k, s in (n.layer.tensors(n.input_shapes) or {}).items()}
    assert static == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    with FlopCounterMode(display=False) as counter:
        reference(torch.empty(1, *graph.input_shape, device="meta"))
    assert graph.macs == counter.get_total_flops() // 2
