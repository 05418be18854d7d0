"""Property test: on any random spec the checker rejects exactly what torch cannot run.

The specs come from tests/check/random_specs.py (see there for the domain); torch's verdict
comes from the independent interpreter there, not from cnnspec's builders.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

import cnnspec
from cnnspec.errors import ShapeError
from tests.build._build_helpers import assert_agrees, run_with_hooks
from tests.check.random_specs import (
    PROFILE,
    Ids,
    Layer,
    cnnspec_verdict,
    head,
    lower,
    segment,
    small,
    spec_text,
    torch_verdict,
    with_id,
)


@st.composite
def any_spec(draw: st.DrawFn) -> tuple[tuple[int, int, int], list[Layer]]:
    shape = (draw(small(1, 6)), draw(small(1, 12)), draw(small(1, 12)))
    ids, layers = Ids(), []
    for _ in range(draw(small(1, 4))):
        layers += lower(draw(segment(auto_shortcut=False)), ids)
    for layer in draw(head):
        layers.append(with_id(layer, ids.new()))
    return shape, layers


@PROFILE
@given(any_spec())
def test_checker_rejects_exactly_what_torch_cannot_run(case: tuple[tuple[int, int, int], list[Layer]]) -> None:
    shape, layers = case
    text = spec_text(shape, layers)
    note(text)
    static = cnnspec_verdict(text)
    dynamic = torch_verdict(shape, layers)
    note(f"checker: {static}\ntorch: {dynamic if isinstance(dynamic, Exception) else tuple(dynamic[0].shape)}")
    event("rejected by both" if isinstance(static, ShapeError) else "accepted by checker")
    assert isinstance(static, ShapeError) == isinstance(dynamic, Exception)
    if not isinstance(static, ShapeError):
        assert not isinstance(dynamic, Exception)
        assert tuple(dynamic[0].shape[1:]) == static.output_shape
        assert dynamic[1] == static.total_params
        model = cnnspec.build(static)
        assert_agrees(static, model, run_with_hooks(static, model))


@pytest.mark.parametrize(
    ("shape", "layers"),
    [  # hand-picked corners: each is rejected by both, or accepted by both
        ((3, 5, 5), [{"conv2d": {"out_channels": 4, "kernel_size": 3, "dilation": 3}}]),
        ((3, 5, 5), [{"conv2d": {"out_channels": 4, "kernel_size": 3, "groups": 2}}]),
        ((4, 5, 5), [{"conv2d": {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "same"}}]),
        ((1, 2, 2), [{"conv2d": {"out_channels": 1, "kernel_size": 1, "padding": 2, "padding_mode": "reflect"}}]),
        ((1, 3, 3), [{"maxpool2d": {"kernel_size": 2, "padding": 2}}]),
        ((1, 5, 5), [{"maxpool2d": {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}}]),
        ((4, 4, 4), [{"groupnorm": {"num_groups": 3}}]),
        ((2, 4, 4), [{"conv_transpose2d": {"out_channels": 2, "kernel_size": 3, "stride": 2, "output_padding": 2}}]),
        (
            (1, 1, 1),
            [
                {
                    "conv_transpose2d": {
                        "out_channels": 1,
                        "kernel_size": 1,
                        "stride": 2,
                        "padding": 1,
                        "output_padding": 1,
                    }
                }
            ],
        ),  # an empty 0×0 output
        ((3, 4, 4), [{"slice": {"start": 2, "end": 5}}]),  # torch would return 1 channel, not 3
        ((3, 4, 4), [{"slice": {"start": 0, "end": 3}}]),
        ((6, 4, 4), [{"slice": {"chunks": 4, "index": 0}}]),  # torch's chunk would give 2, 2, 2
        ((6, 4, 4), [{"channel_shuffle": {"groups": 4}}]),
        ((6, 4, 4), [{"channel_shuffle": {"groups": 3}}]),
        ((2, 4, 4), [{"avgpool2d": {"id": "row", "kernel_size": [4, 1]}}, {"multiply": {"inputs": ["input", "row"]}}]),
        ((2, 4, 4), [{"avgpool2d": {"id": "one", "kernel_size": 4}}, {"multiply": {"inputs": ["input", "one"]}}]),
        (
            (2, 4, 4),
            [{"conv2d": {"id": "map", "out_channels": 1, "kernel_size": 1}}, {"add": {"inputs": ["map", "input"]}}],
        ),
    ],
)
def test_corner_cases_agree(shape: tuple[int, int, int], layers: list[Layer]) -> None:
    static = cnnspec_verdict(spec_text(shape, layers))
    assert isinstance(static, ShapeError) == isinstance(torch_verdict(shape, layers), Exception)
