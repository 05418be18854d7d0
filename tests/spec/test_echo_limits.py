"""Names from the input are echoed at most ECHO_LIMIT characters long, and a huge name costs no search.

A 1 MB layer kind once came back whole in its message (and its did-you-mean search compared a
million characters with every kind name). Each place that quotes a name the user wrote is covered.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import FrameType

import pytest

from cnnspec.errors import ECHO_LIMIT, Diagnostic, shown, suggest
from cnnspec.validate import validate_file

BIG = "a" * 1_000_000
INPUT = "  input: {channels: 1, height: 4, width: 4}\n"

CASES = {
    "a bare kind": (f"model:\n{INPUT}  layers:\n    - {BIG}\n", "unknown layer kind"),
    "an id in inputs": (f"model:\n{INPUT}  layers:\n    - relu: {{inputs: [{BIG}]}}\n", "unknown layer id"),
    "a block name": (f"model:\n{INPUT}  layers:\n    - block: {{name: {BIG}}}\n", "unknown block"),
    "a var": (
        f"model:\n{INPUT}  layers:\n    - conv2d: {{out_channels: ${BIG}, kernel_size: 1}}\n",
        "unknown variable",
    ),
    "an augmentation": (
        f"model:\n{INPUT}  layers: [relu]\ndata:\n  dataset: {{name: digits}}\n  augment: [{BIG}]\n",
        "unknown augmentation",
    ),
    "a block parameter": (
        f"model:\n{INPUT}  blocks:\n    b:\n      params: {{}}\n      layers:\n"
        f"        - conv2d: {{out_channels: ${BIG}, kernel_size: 1}}\n  layers:\n    - block: {{name: b}}\n",
        "is not a parameter of this block",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_megabyte_name_is_echoed_cut_with_its_length(tmp_path: Path, case: str) -> None:
    text, what = CASES[case]
    (tmp_path / "spec.yaml").write_text(f"name: big\n{text}", encoding="utf-8")
    _, found = validate_file(tmp_path / "spec.yaml")
    (d,) = [d for d in found if what in d.message]
    assert re.search(r"…' \(1,000,00[01] characters\)", d.message)  # '$' + the name for a block parameter
    assert len(Diagnostic.format(d)) < 1_000  # the message, its notes and its hint


def test_shown_quotes_a_short_name_whole_and_cuts_a_long_one() -> None:
    assert shown("relu") == "'relu'"
    assert shown("x" * ECHO_LIMIT) == f"'{'x' * ECHO_LIMIT}'"
    assert shown("x" * (ECHO_LIMIT + 1)) == f"'{'x' * (ECHO_LIMIT - 1)}…' ({ECHO_LIMIT + 1:,} characters)"


def _edit_distances(name: str, candidates: list[str]) -> tuple[str | None, int]:
    """`suggest(name, candidates)` and how many edit distances it computed (work, not time)."""
    compared = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal compared
        if event == "call" and frame.f_code.co_name == "_distance":
            compared += 1

    sys.setprofile(count)
    try:
        return suggest(name, candidates), compared
    finally:
        sys.setprofile(None)


def test_a_name_far_longer_than_every_candidate_is_not_compared_letter_by_letter() -> None:
    from cnnspec.layers import REGISTRY

    kinds = list(REGISTRY)
    assert _edit_distances(BIG, kinds) == (None, 0)  # no slip of the keyboard makes it: nothing to compare
    hint, compared = _edit_distances("rellu", kinds)
    assert hint == "did you mean 'relu'?" and compared > 0  # the count sees the comparisons that do run


def test_a_near_name_still_gets_its_suggestion() -> None:
    assert suggest("relu" * 10, ["relu", "relu6"]) is None
    assert suggest("rellu", ["relu", "relu6"]) == "did you mean 'relu'?"
    assert suggest("batchnorm2d_x", ["batchnorm2d"]) == "did you mean 'batchnorm2d'?"  # a tail still counts
