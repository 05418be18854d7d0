"""The summary plot's stages are the layers whose kind class says it slides a window, whatever its name."""

from __future__ import annotations

from typing import ClassVar

import pytest

from cnnspec.checker.summary import Memory, Row, Summary
from cnnspec.layers import REGISTRY, LayerKind
from cnnspec.render.summary import stages


class PointwiseMix(LayerKind):
    """A kind whose name starts like a convolution's but that slides no window."""

    kind: ClassVar[str] = "conv_pointwise_mix"


class Blur(LayerKind):
    """A kind with no conv/pool name that does slide a window."""

    kind: ClassVar[str] = "blur"
    slides_window: ClassVar[bool] = True


def _row(layer_id: str, kind: str, shape: list[int]) -> Row:
    return Row(layer_id, kind, shape, 0, True, 0, 1, 1, [])


def test_plot_stages_are_the_kinds_that_slide_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (PointwiseMix, Blur):
        monkeypatch.setitem(REGISTRY, cls.kind, cls)
    rows = [
        _row("stem", "conv2d", [8, 16, 16]),
        _row("mix", "conv_pointwise_mix", [8, 16, 16]),
        _row("pool", "maxpool2d", [8, 8, 8]),
        _row("blur", "blur", [8, 8, 8]),
        _row("up", "conv_transpose2d", [4, 16, 16]),
        _row("avg", "avgpool2d", [4, 8, 8]),
        _row("block.downsample", "shortcut", [4, 8, 8]),  # a part sugar expands into: not a registered kind
        _row("gap", "adaptive_avgpool2d", [4, 1, 1]),
        _row("flat", "flatten", [4]),
    ]
    summary = Summary("net", [3, 16, 16], [4], 0, 0, 0, rows, [], {}, 0, 0, Memory(1, 0, 0, 0, 0, False))
    assert [r.id for r in stages(summary)] == ["stem", "pool", "blur", "up", "avg"]
