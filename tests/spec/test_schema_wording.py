"""Schema errors name the field and say what was read (issue 15, item 10).

Each test writes the digits spec as a new user did, runs `cnnspec validate` (with `--set` where the
user used one) and checks the exact lines they see.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.conftest import SPECS

DIGITS = (SPECS / "digits.yaml").read_text()
SEED = "train: {epochs: 15, seed: 0}"
LEADING_ZERO = [
    "error: '010' has a leading zero: YAML 1.1 tools read it as octal (8), YAML 1.2 (cnnspec) as decimal (10)",
    "  hint: write 10 without the zero, or quote it ('010') if it is a name",
]


def _validate(tmp_path: Path, *overrides: str, old: str = SEED, new: str = SEED) -> tuple[int, list[str]]:
    assert old in DIGITS
    (tmp_path / "spec.yaml").write_text(DIGITS.replace(old, new))
    with contextlib.chdir(tmp_path):
        result = run_cli("validate", "spec.yaml", *[a for o in overrides for a in ("--set", o)])
    return result.exit_code, result.stderr.splitlines()


def _at(text: str, column_of: str) -> str:
    for number, line in enumerate(DIGITS.replace(SEED, text).splitlines(), 1):
        if text in line:
            return f"spec.yaml:{number}:{line.index(column_of) + 1}"
    raise AssertionError(text)


def test_a_zero_out_channels_is_said_of_the_field_not_of_an_input(tmp_path: Path) -> None:
    old = "conv2d: {id: conv1, out_channels: 32"
    code, lines = _validate(tmp_path, old=old, new=old.replace("32", "0"))
    number = DIGITS.splitlines().index(next(x for x in DIGITS.splitlines() if old in x)) + 1
    column = next(x for x in DIGITS.splitlines() if old in x).index("32") + 1
    assert (code, lines) == (
        1,
        [f"spec.yaml:{number}:{column}: error: model.layers[0].conv2d.out_channels should be greater than 0, got 0"],
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "train.epochs should be greater than 0, got 0"),
        ("data.val_split=1.5", "data.val_split should be less than 1, got 1.5"),
    ],
)
def test_a_broken_bound_set_on_the_command_line_is_said_of_the_field(
    tmp_path: Path, override: str, message: str
) -> None:
    assert _validate(tmp_path, override) == (1, [f"--set {override}: error: {message}"])


def test_a_seed_with_a_leading_zero_in_the_file_says_how_it_is_read(tmp_path: Path) -> None:
    new = "train: {epochs: 15, seed: 010}"
    code, lines = _validate(tmp_path, new=new)
    assert (code, lines) == (1, [f"{_at(new, '010')}: {LEADING_ZERO[0]}", LEADING_ZERO[1]])  # not "got 10.0"


def test_a_seed_with_a_leading_zero_is_explained_when_a_set_changes_something_else(tmp_path: Path) -> None:
    new = "train: {epochs: 15, seed: 010}"
    code, lines = _validate(tmp_path, "train.epochs=1", new=new)
    assert (code, lines) == (1, [f"{_at(new, '010')}: {LEADING_ZERO[0]}", LEADING_ZERO[1]])  # not "got '010'"


def test_a_seed_with_a_leading_zero_in_the_file_that_a_set_replaces_is_no_error(tmp_path: Path) -> None:
    assert _validate(tmp_path, "train.seed=1", new="train: {epochs: 15, seed: 010}") == (0, [])


@pytest.mark.parametrize("override", ["train.seed=010", "train={epochs: 15, seed: 010}"])
def test_a_seed_with_a_leading_zero_on_the_command_line_says_how_it_is_read(tmp_path: Path, override: str) -> None:
    code, lines = _validate(tmp_path, override)
    assert (code, lines) == (1, [f"--set {override}: {LEADING_ZERO[0]}", LEADING_ZERO[1]])


def test_a_leading_zero_on_the_command_line_that_a_later_set_replaces_is_no_error(tmp_path: Path) -> None:
    assert _validate(tmp_path, "train.seed=010", "train={epochs: 1, seed: 3}") == (0, [])


def test_a_set_that_replaces_a_leading_zero_with_a_wrong_value_gets_that_values_error(tmp_path: Path) -> None:
    code, lines = _validate(tmp_path, "train.seed=abc", new="train: {epochs: 15, seed: 010}")
    assert (code, lines) == (1, ["--set train.seed=abc: error: train.seed: expected an integer, got 'abc'"])
