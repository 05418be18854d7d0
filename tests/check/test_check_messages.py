"""The notes of a shape error: each input that a layer reads is described once, however often it is read."""

from __future__ import annotations

import cnnspec
from cnnspec.checker.checker import analyse

SPEC = """\
name: notes
model:
  input: {channels: 4, height: 5, width: 5}
  layers:
    - conv2d: {id: full, out_channels: 4, kernel_size: 1}
    - conv2d: {id: narrow, inputs: [full], out_channels: 2, kernel_size: 1}
    - add: {inputs: [narrow, full, full, narrow]}
"""


def test_an_input_read_twice_is_described_once_in_the_notes() -> None:
    _, found = analyse(cnnspec.loads(SPEC, "notes.yaml"))
    (d,) = [d for d in found if d.severity == "error"]
    assert d.message.startswith("add needs inputs of the same shape")
    assert d.notes == ("narrow is 2×5×5", "full is 4×5×5")


def test_auto_padding_of_a_dilated_maxpool_is_refused_as_torch_refuses_it_saying_what_auto_computed() -> None:
    import pytest
    import torch

    def spec(padding: str) -> cnnspec.Spec:
        return cnnspec.loads(
            "name: t\nmodel:\n  input: {channels: 8, height: 9, width: 9}\n"
            f"  layers: [maxpool2d: {{kernel_size: 3, dilation: 4, stride: 1, padding: {padding}}}]\n",
            "t.yaml",
        )

    # torch's own rule is the oracle
    with pytest.raises(RuntimeError, match="pad should be smaller than or equal to half of kernel size"):
        torch.nn.MaxPool2d(3, 1, padding=4, dilation=4)(torch.zeros(1, 8, 9, 9))
    with pytest.raises(cnnspec.CnnspecError) as info:
        cnnspec.check(spec("auto"))
    (d,) = info.value.diagnostics
    assert "padding: auto computes d·(k−1)/2 = 4·(3−1)/2 = 4" in d.message
    assert d.hint is not None and "≤ 1" in d.hint
    # the padding the hint offers is one torch takes, and the check's shape is torch's
    out = torch.nn.MaxPool2d(3, 1, padding=1, dilation=4)(torch.zeros(1, 8, 9, 9))
    assert cnnspec.check(spec("1")).output_shape == tuple(out.shape[1:])


def _analysed(layers: str) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    spec = cnnspec.loads(
        "name: t\nmodel:\n  input: {channels: 8, height: 8, width: 8}\n  layers:\n"
        + "".join(f"    {line}\n" for line in layers.strip("\n").splitlines()),
        "t.yaml",
    )
    return [(d.severity, d.message, d.hint, d.notes) for d in analyse(spec)[1]]


def test_an_automatic_id_in_inputs_is_said_to_be_one_and_its_layer_not_called_unused() -> None:
    found = _analysed("- relu\n- softplus\n- add: {inputs: [softplus_1, relu_0]}")
    assert found == [
        (
            "error",
            "unknown layer id 'softplus_1' in inputs",
            "automatic ids (KIND_INDEX) cannot be referenced: give that layer an `id:` and list that",
            ("'softplus_1' is the automatic name of the layer at t.yaml:6:7",),
        ),
        (
            "error",
            "unknown layer id 'relu_0' in inputs",
            "automatic ids (KIND_INDEX) cannot be referenced: give that layer an `id:` and list that",
            ("'relu_0' is the automatic name of the layer at t.yaml:5:7",),
        ),
    ]  # no "the output of 'softplus_1' is never used"


def test_a_shortcut_id_that_clashes_with_the_activation_gives_the_error_without_an_unused_warning() -> None:
    layers = "- residual:\n    id: r\n    shortcut_id: relu\n    activation: relu\n"
    layers += "    body: [{conv2d: {out_channels: 16, kernel_size: 1}}]"
    found = _analysed(layers)
    assert [(severity, message) for severity, message, _, _ in found] == [("error", "two layers are named 'r.relu'")]


def test_an_unused_layer_away_from_any_error_is_still_warned_about() -> None:
    found = _analysed("- relu: {id: a}\n- relu: {id: b, inputs: [input]}\n- add: {inputs: [b, nothere]}")
    assert [(severity, message) for severity, message, _, _ in found] == [
        ("error", "unknown layer id 'nothere' in inputs"),
        ("warning", "the output of 'a' is never used"),
    ]
