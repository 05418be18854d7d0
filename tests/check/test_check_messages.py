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
