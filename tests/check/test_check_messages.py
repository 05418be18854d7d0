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
