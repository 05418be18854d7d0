"""The hint of a data-pipeline size error is an edit that, made, passes validate (issue 15, item 6).

Each case writes the digits spec (8×8 images) with the user's change, runs `cnnspec validate`,
checks the hint, then makes each edit the hint offers and runs validate again.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.conftest import SPECS

DIGITS = (SPECS / "digits.yaml").read_text()
INPUT = "input: {channels: 1, height: 8, width: 8}"
CROP = "- random_crop: {size: 8, padding: 1}"
DATA = "  val_split: 0.1\n"


def _validate(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    (tmp_path / "spec.yaml").write_text(text)
    with contextlib.chdir(tmp_path):
        result = run_cli("validate", "spec.yaml")
    return result.exit_code, result.stderr.splitlines()


def _spec(edits: dict[str, str]) -> str:
    text = DIGITS
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def _input(h: int, w: int) -> dict[str, str]:
    return {INPUT: f"input: {{channels: 1, height: {h}, width: {w}}}"}


CROP6 = {CROP: "- random_crop: {size: 6}"}
FLIP = {CROP: "- horizontal_flip"}
RESIZED = {DATA: DATA + "  resize: [16, 16]\n"}

# (the user's change, the message, the hint, the spec as each edit of the hint leaves it)
CASES = [
    pytest.param(
        CROP6,
        "the data pipeline gives 6×6 images but model.input is 8×8",
        "set model.input height/width to 6×6, or random_crop's size: 8",
        [{**CROP6, **_input(6, 6)}, {CROP: "- random_crop: {size: 8}"}],
        id="a crop smaller than the model input",
    ),
    pytest.param(
        _input(9, 8),
        "the data pipeline gives 8×8 images but model.input is 9×8",
        "set model.input height/width to 8×8, or random_crop's size: [9, 8]",
        [{}, {**_input(9, 8), CROP: "- random_crop: {size: [9, 8], padding: 1}"}],
        id="a model input one row taller than the crop",
    ),
    pytest.param(
        _input(16, 16),
        "the data pipeline gives 8×8 images but model.input is 16×16",
        "set model.input height/width to 8×8, or random_crop's size: 16 with data.resize: [16, 16]",
        [{}, {**_input(16, 16), CROP: "- random_crop: {size: 16, padding: 1}", **RESIZED}],
        id="a crop that cannot grow past its image alone",
    ),
    pytest.param(
        {**_input(16, 16), **FLIP},
        "the data pipeline gives 8×8 images but model.input is 16×16",
        "set model.input height/width to 8×8, or data.resize: [16, 16]",
        [FLIP, {**_input(16, 16), **FLIP, **RESIZED}],
        id="no augmentation sets the size",
    ),
]


@pytest.mark.parametrize(("change", "message", "hint", "fixed"), CASES)
def test_each_edit_the_size_hint_offers_makes_validate_pass(
    tmp_path: Path, change: dict[str, str], message: str, hint: str, fixed: list[dict[str, str]]
) -> None:
    code, lines = _validate(tmp_path, _spec(change))
    assert code == 1
    assert lines[0].endswith(f": error: {message}")
    assert lines[1:] == ["  note: the digits dataset is 1×8×8", f"  hint: {hint}"]
    for edits in fixed:
        assert _validate(tmp_path, _spec(edits)) == (0, []), edits
