"""Mistakes of YAML form get the fix they need, not a suggestion that points elsewhere (issue 15, items 7, 10).

Each test writes the digits spec with one line as a new user wrote it, runs `cnnspec validate` and
checks the message and its location; then writes the line as the hint says and checks that it passes.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.conftest import SPECS

DIGITS = (SPECS / "digits.yaml").read_text()


def _validate(tmp_path: Path, old: str, new: str) -> tuple[int, str]:
    assert old in DIGITS
    (tmp_path / "spec.yaml").write_text(DIGITS.replace(old, new))
    with contextlib.chdir(tmp_path):  # the file as the user names it
        result = run_cli("validate", "spec.yaml")
    return result.exit_code, result.stderr


def _line_col(old: str, new: str, column_of: str) -> str:
    """`LINE:COL` of `column_of` inside the line that `old` is replaced on."""
    for number, line in enumerate(DIGITS.replace(old, new).splitlines(), 1):
        if new in line:
            return f"{number}:{line.index(column_of) + 1}"
    raise AssertionError(new)


def _the_fix(stderr: str) -> str:
    """What the hint says to write (the last `...` in it)."""
    return re.findall(r"`([^`]*)`", stderr)[-1]


DROPOUT = "- dropout: {p: 0.2}"


@pytest.mark.parametrize(
    "written",
    ["- dropout 0.2", "- dropout(0.2)", "- dropout p=0.2", "- dropout p: 0.2", "- Dropout 0.2", "- dropuot 0.2"],
)
def test_a_kind_with_its_parameter_on_one_line_gets_the_mapping_not_another_kind(tmp_path: Path, written: str) -> None:
    code, stderr = _validate(tmp_path, DROPOUT, written)
    assert code == 1
    lines = stderr.splitlines()
    kind = written.removeprefix("- ").split(":")[0]
    assert lines[0] == f"spec.yaml:{_line_col(DROPOUT, written, written[2:])}: error: unknown layer kind '{kind}'"
    assert lines[1:] == [
        "  hint: parameters go in a mapping after the name and a colon: write `- dropout: {p: 0.2}`"
    ]  # not "did you mean 'dropout2d'?"
    assert _validate(tmp_path, DROPOUT, _the_fix(stderr)) == (0, "")


def test_a_kind_given_a_value_for_its_parameters_gets_the_mapping(tmp_path: Path) -> None:
    code, stderr = _validate(tmp_path, DROPOUT, "- dropout: 0.2")
    assert code == 1
    assert stderr.splitlines() == [
        f"spec.yaml:{_line_col(DROPOUT, '- dropout: 0.2', '0.2')}: error: model.layers[10].dropout: expected a "
        "mapping, got 0.2",
        "  hint: parameters go in a mapping after the name and a colon: write `- dropout: {p: 0.2}`",
    ]


def test_two_values_on_one_line_go_to_the_required_parameters(tmp_path: Path) -> None:
    old = "- conv2d: {id: conv2, out_channels: 64, kernel_size: 3, padding: 1}"
    code, stderr = _validate(tmp_path, old, "- conv2d 64 3")
    assert code == 1
    assert stderr.splitlines()[1] == (
        "  hint: parameters go in a mapping after the name and a colon: "
        "write `- conv2d: {out_channels: 64, kernel_size: 3}`"
    )


def test_an_augmentation_with_its_size_on_one_line_gets_the_mapping(tmp_path: Path) -> None:
    old = "- random_crop: {size: 8, padding: 1}"
    code, stderr = _validate(tmp_path, old, "- random_crop 8")
    assert code == 1
    assert stderr.splitlines() == [
        f"spec.yaml:{_line_col(old, '- random_crop 8', 'random_crop')}: error: unknown augmentation 'random_crop 8'",
        "  hint: parameters go in a mapping after the name and a colon: write `- random_crop: {size: 8}`",
    ]
    assert _validate(tmp_path, old, _the_fix(stderr)) == (0, "")


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("{kernel_size:2}", "YAML needs a space after the colon: write `kernel_size: 2`"),
        ("{kernel_size=2}", "a key and its value are written `KEY: VALUE`: write `kernel_size: 2`"),
    ],
)
def test_a_key_glued_to_its_value_says_how_to_write_it_and_nothing_else(
    tmp_path: Path, written: str, hint: str
) -> None:
    old = "maxpool2d: {kernel_size: 2}"
    new = f"maxpool2d: {written}"
    code, stderr = _validate(tmp_path, old, new)
    assert code == 1
    # one error: not also "missing required key 'kernel_size'", and no "did you mean 'kernel_size'?"
    assert stderr.splitlines() == [
        f"spec.yaml:{_line_col(old, new, 'kernel_size')}: error: unknown key '{written[1:-1]}' in "
        "model.layers[6].maxpool2d",
        f"  hint: {hint}",
    ]
    assert _validate(tmp_path, old, "maxpool2d: {" + _the_fix(stderr) + "}") == (0, "")


@pytest.mark.parametrize(
    ("old", "new", "key", "where"),
    [
        ("schedule: {name: cosine, warmup_epochs: 1}", "schedule: cosine", "schedule", "schedule"),
        ("dataset: {name: digits}", "dataset: digits", "dataset", "data.dataset"),
    ],
)
def test_a_name_where_a_mapping_goes_gets_the_mapping_with_that_name(
    tmp_path: Path, old: str, new: str, key: str, where: str
) -> None:
    code, stderr = _validate(tmp_path, old, new)
    value = new.split(": ")[1]
    assert code == 1
    assert stderr.splitlines() == [
        f"spec.yaml:{_line_col(old, new, value)}: error: {where}: expected a mapping, got '{value}'",
        f"  hint: a {key} is a mapping: write `{key}: {{name: {value}}}`",
    ]
    assert _validate(tmp_path, old, _the_fix(stderr)) == (0, "")


def test_a_name_that_is_no_schedule_gets_no_mapping_hint(tmp_path: Path) -> None:
    code, stderr = _validate(tmp_path, "schedule: {name: cosine, warmup_epochs: 1}", "schedule: fast")
    assert code == 1
    assert "hint" not in stderr
