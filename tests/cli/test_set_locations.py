"""Every error a `--set` causes is located at that `--set` argument, with the file's line as a note
(issue 15, item 8; docs/training.md, "Overrides"): schema, shape, data and class-count errors.

Each test copies specs/digits.yaml, runs the command a user ran (validate, summary, train) with the
override, and checks the lines it prints; a problem the file has without any `--set` keeps its line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.conftest import SPECS

DIGITS = (SPECS / "digits.yaml").read_text()


@pytest.fixture
def here(tmp_path: Path) -> Iterator[Path]:
    """A folder holding spec.yaml (digits), as the working directory: messages name `spec.yaml`."""
    (tmp_path / "spec.yaml").write_text(DIGITS)
    with contextlib.chdir(tmp_path):
        yield tmp_path


def _at(text: str, column_of: str, spec: str = DIGITS) -> str:
    """spec.yaml:LINE:COL of `column_of` in the line of `spec` that holds `text`."""
    (number, line), *_ = [(n, line) for n, line in enumerate(spec.splitlines(), 1) if text in line]
    return f"spec.yaml:{number}:{line.index(column_of) + 1}"


def _run(*args: str) -> tuple[int, list[str]]:
    result = run_cli(*args)
    return result.exit_code, result.stderr.splitlines()


KERNEL = "model.layers.3.conv2d.kernel_size=20"
SHAPE = [
    f"--set {KERNEL}: error: conv2d output would be -9×-9: its input 32×8×8 is smaller than the kernel",
    "  note: H: ⌊(8 + 2·1 − 1·(20−1) − 1)/1⌋ + 1 = -9",
    "  note: W: ⌊(8 + 2·1 − 1·(20−1) − 1)/1⌋ + 1 = -9",
    f"  note: in the file at {_at('id: conv2', '{id: conv2')}",
    "  hint: add padding, use a smaller kernel or stride, or downsample less before this layer",
]
HEIGHT = "model.input.height=9"
DATA = [
    f"--set {HEIGHT}: error: the data pipeline gives 8×8 images but model.input is 9×8",
    "  note: the digits dataset is 1×8×8",
    f"  note: in the file at {_at('random_crop', '8')}",
    "  hint: set model.input height/width to 8×8, or random_crop's size: [9, 8]",
]
SCHEMA = "model.layers.3.conv2d.kernel_size=0"


@pytest.mark.parametrize("command", ["validate", "summary"])
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param(KERNEL, SHAPE, id="shape"),
        pytest.param(HEIGHT, DATA, id="data"),
        pytest.param(
            SCHEMA,
            [f"--set {SCHEMA}: error: model.layers[3].conv2d.kernel_size should be greater than 0, got 0"],
            id="schema",
        ),
    ],
)
def test_an_error_a_set_causes_is_located_at_the_set(
    here: Path, command: str, override: str, expected: list[str]
) -> None:
    assert _run(command, "spec.yaml", "--set", override) == (1, expected)


def test_the_error_is_located_at_the_set_that_brings_it_among_several(here: Path) -> None:
    code, lines = _run(
        "validate", "spec.yaml", "--set", "train.epochs=2", "--set", KERNEL, "--set", "data.batch_size=8"
    )
    assert (code, lines) == (1, SHAPE)


def test_an_error_the_file_has_keeps_its_line_beside_a_set(here: Path) -> None:
    (here / "spec.yaml").write_text(DIGITS.replace("random_crop: {size: 8, padding: 1}", "random_crop: {size: 6}"))
    code, lines = _run("validate", "spec.yaml", "--set", "train.epochs=2")
    assert code == 1
    assert lines[0] == f"{_at('random_crop', '8')}: error: the data pipeline gives 6×6 images but model.input is 8×8"
    assert not any("in the file at" in line for line in lines)


def test_a_shape_error_at_a_later_layer_is_located_at_the_set_that_changed_an_earlier_one(here: Path) -> None:
    spec = DIGITS.replace("batchnorm2d: {id: bn2}", "batchnorm2d: {id: bn2, num_features: 64}")
    (here / "spec.yaml").write_text(spec)
    code, lines = _run("validate", "spec.yaml", "--set", "model.layers.3.conv2d.out_channels=48")
    assert code == 1
    assert lines[0] == (
        "--set model.layers.3.conv2d.out_channels=48: error: batchnorm2d expects num_features=64 but its input has 48"
    )
    assert f"  note: in the file at {_at('id: bn2', '64', spec)}" in lines


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param(
            "model.layers.11.linear.out_features=5",
            [
                "--set model.layers.11.linear.out_features=5: error: the model outputs 5 class scores but digits has "
                "10 classes",
                "  note: 'head' is the model's output layer",
                f"  note: in the file at {_at('id: head', '{id: head')}",
                "  hint: set out_features: 10 on the last layer",
            ],
            id="class count",
        ),
        pytest.param(KERNEL, SHAPE, id="shape"),
        pytest.param(HEIGHT, DATA, id="data"),
    ],
)
# The class count is checked after the dataset is loaded: about 2 s for digits with torch imported
# already (8 s alone on the 2 shared cores, most of it the first torch and scikit-learn import).
def test_train_locates_an_error_a_set_causes_at_the_set_and_writes_nothing(
    here: Path, override: str, expected: list[str]
) -> None:
    assert _run("train", "spec.yaml", "--out", "run", "--quiet", "--set", override) == (1, expected)
    assert not (here / "run").exists()
