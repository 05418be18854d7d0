"""The one YAML event walker (cnnspec.spec.events), which loading and `fmt` both read a spec through,
places every node at the path ruamel's own constructor gives it."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from cnnspec.spec.events import pure_events, walk

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cnnspec"


def _paths(value: Any, path: tuple[Hashable, ...] = ()) -> list[tuple[Hashable, ...]]:
    """Every node's path in plain data, depth first (the order a YAML stream has its nodes in)."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


TEXTS = [
    "a: 1\nb: [2, {c: 3, d: [4, 5]}]\n",
    "name: x\nmodel:\n  layers:\n    - conv2d: {out_channels: 8, kernel_size: 3}\n    - relu\n    - {}\n",
    (ROOT / "specs" / "resnet18.yaml").read_text(encoding="utf-8"),
]


@pytest.mark.parametrize("text", TEXTS, ids=["nested", "layers", "resnet18"])
def test_every_node_is_at_the_path_ruamels_constructor_gives_it(text: str) -> None:
    steps = list(walk(pure_events(text)))
    nodes = [s.path for s in steps if s.kind == "node"]
    assert nodes == _paths(YAML(typ="safe", pure=True).load(text))
    keys = [s.path for s in steps if s.kind == "key"]
    mapping_children = [s.path for s in steps if s.kind == "node" and s.parent is not None and s.parent.mapping]
    assert keys == mapping_children  # each key names the value that follows it
    assert sum(s.kind == "end" for s in steps) == sum(s.opened is not None for s in steps if s.kind == "node")


def test_a_key_a_mapping_holds_already_carries_the_line_of_the_first() -> None:
    steps = list(walk(pure_events("a: 1\nb:\n  c: 2\n  c: 3\na: 4\n")))
    assert [(s.path, s.first_line) for s in steps if s.kind == "key"] == [
        (("a",), None),
        (("b",), None),
        (("b", "c"), None),
        (("b", "c"), 3),
        (("a",), 1),
    ]


def test_a_key_that_is_not_a_scalar_stops_the_walk() -> None:
    with pytest.raises(ValueError, match="plain names"):
        list(walk(pure_events("? [a, b]\n: 1\n")))


def test_only_the_walker_keeps_the_stack_of_open_collections() -> None:
    # A reader that closes collections itself is a second walker: loading and fmt read the walker's steps.
    readers = [
        str(p.relative_to(ROOT))
        for p in sorted(PACKAGE.rglob("*.py"))
        if "MappingEndEvent" in p.read_text(encoding="utf-8") or "SequenceEndEvent" in p.read_text(encoding="utf-8")
    ]
    assert readers == ["cnnspec/spec/events.py"]
