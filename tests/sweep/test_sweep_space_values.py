"""Space values are tried and shown as written: strings stay strings, a choice optuna would confuse
(true and 1) or an int range it cannot hold exactly is refused, and so is a path into sweep: itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.sweep._helpers import write_spec


def test_a_string_choice_stays_a_string(tmp_path: Path) -> None:
    import cnnspec
    from cnnspec.sweep.space import best_spec_text, candidate

    path = "data.dataset.root"  # a string field: a folder named true is a folder
    spec_path = write_spec(tmp_path, extra=f'    {path}: {{choice: ["true", "1", "null"]}}\n')
    spec = cnnspec.load(spec_path)
    for value in ("true", "1", "null"):
        found = candidate(spec, {path: value})
        assert found.spec is not None and found.spec.data is not None, found.error
        assert found.spec.data.dataset.root == value
        best = cnnspec.loads(best_spec_text(spec_path.read_text(), str(spec_path), {path: value}))
        assert best.data is not None and best.data.dataset.root == value


@pytest.mark.parametrize(
    ("entry", "found", "line"),
    [
        ("vars.flag: {choice: [1, true]}", "mixes booleans and numbers", 23),
        ("vars.flag: {choice: [1, 1.0]}", "holds 1.0 twice", 23),
        ("vars.flag: {int: [1, 1000000000000000000000000000000]}", "beyond ±2**53", 23),
        ("sweep.trials: {int: [100, 200]}", "not something a trial trains", 23),
    ],
)
def test_a_range_optuna_cannot_draw_exactly_is_a_located_error(
    tmp_path: Path, entry: str, found: str, line: int
) -> None:
    spec = write_spec(tmp_path, extra=f"    {entry}\n")
    spec.write_text(spec.read_text().replace("name: digits-sweep\n", "name: digits-sweep\nvars: {flag: 1}\n"))
    result = run_cli("sweep", str(spec), "--out", str(tmp_path / "sw"))
    assert result.exit_code == 1, result.output
    assert found in result.output
    assert f"{spec}:{line + 1}:" in result.output, result.output  # +1: the vars line added above
    assert not (tmp_path / "sw").exists()
