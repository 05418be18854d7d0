"""An error's hint is never dropped, however the error is made."""

from __future__ import annotations

from pathlib import Path

from cnnspec.errors import CnnspecError, Diagnostic, Location, SpecError
from tests.cli_helpers import run_cli


def test_a_hint_given_beside_a_diagnostic_is_shown() -> None:
    error = SpecError(Diagnostic("no such file", Location("spec.yaml", 3, 5)), hint="check the path")
    assert error.format() == "spec.yaml:3:5: error: no such file\n  hint: check the path"


def test_a_hint_beside_diagnostics_that_have_one_is_added_to_the_last() -> None:
    first, last = Diagnostic("a", hint="one"), Diagnostic("b", hint="two")
    assert CnnspecError([first, last], hint="three").format() == "error: a\n  hint: one\nerror: b\n  hint: two; three"


def test_init_over_an_existing_file_shows_its_hint(tmp_path: Path) -> None:
    target = tmp_path / "spec.yaml"
    target.write_text("mine\n")
    result = run_cli("init", "digits", str(target))
    assert result.exit_code == 1
    assert "hint: choose another path, or delete the file first" in result.stderr
    assert target.read_text() == "mine\n"
