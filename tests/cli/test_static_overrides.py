"""`validate` and `summary` take train's `--set KEY=VALUE`: they check the spec train would build.

The expected output comes from the same command run on a copy of the file edited by hand,
and the expected errors from `cnnspec train` given the same overrides.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "specs" / "digits.yaml"
# Two overrides (the option repeats) and the text edits that make the same spec by hand.
OVERRIDES = ["model.layers.3.conv2d.out_channels=48", "model.layers.8.linear.out_features=96"]
EDITS = [
    ("{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 48,"),
    ("- linear: {out_features: 128}", "- linear: {out_features: 96}"),
]
BAD = [
    "optimizer.lrr=0.1",  # unknown key, with a suggestion
    "data.batch_size=-3",  # a value the schema refuses
    "nokey",  # not KEY=VALUE
    "model.layers.8.linear.in_features=5",  # a shape error located at the --set
    "model.input.height=7",  # a data check, located at the --set too
]


def edited_copy(tmp_path: Path) -> Path:
    text = DIGITS.read_text(encoding="utf-8")
    for old, new in EDITS:
        assert text.count(old) == 1
        text = text.replace(old, new)
    path = tmp_path / "digits.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def set_args(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def test_validate_with_set_reports_what_the_edited_file_reports(tmp_path: Path) -> None:
    edited = edited_copy(tmp_path)
    by_hand = run_cli("validate", str(edited))
    overridden = run_cli("validate", str(DIGITS), *set_args(OVERRIDES))
    plain = run_cli("validate", str(DIGITS))
    assert by_hand.exit_code == overridden.exit_code == plain.exit_code == 0
    assert overridden.stdout.replace(str(DIGITS), "SPEC") == by_hand.stdout.replace(str(edited), "SPEC")
    assert overridden.stdout != plain.stdout  # the overrides changed the parameter count


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_summary_with_set_is_the_summary_of_the_edited_file(tmp_path: Path, fmt: str) -> None:
    edited = edited_copy(tmp_path)
    by_hand = run_cli("summary", str(edited), "--format", fmt)
    overridden = run_cli("summary", str(DIGITS), "--format", fmt, *set_args(OVERRIDES))
    plain = run_cli("summary", str(DIGITS), "--format", fmt)
    assert by_hand.exit_code == overridden.exit_code == plain.exit_code == 0
    assert overridden.stdout == by_hand.stdout
    assert overridden.stdout != plain.stdout


@pytest.mark.parametrize("override", BAD)
def test_a_bad_set_gives_validate_summary_and_train_the_same_error(tmp_path: Path, override: str) -> None:
    train = run_cli("train", str(DIGITS), "--out", str(tmp_path / "run"), "--quiet", "--set", override)
    assert train.exit_code == 1, train.stderr
    assert not (tmp_path / "run").exists()
    for command in ("validate", "summary"):
        result = run_cli(command, str(DIGITS), "--set", override)
        assert result.exit_code == 1, (command, result.stdout, result.stderr)
        assert result.stderr == train.stderr, command


def test_validate_json_locates_an_override_error_at_its_set() -> None:
    result = run_cli("validate", str(DIGITS), "--format", "json", "--set", "optimizer.lrr=0.1")
    assert result.exit_code == 1
    [report] = json.loads(result.stdout)
    assert report["valid"] is False
    [diagnostic] = report["diagnostics"]
    assert diagnostic["file"] == "--set optimizer.lrr=0.1"
    assert "unknown key 'lrr' in optimizer" in diagnostic["message"]
