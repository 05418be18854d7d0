"""`cnnspec summary` never passes a spec name's terminal escape sequences to the terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.mark.parametrize("fmt", ["text", "markdown", "lines"])
def test_a_spec_name_with_escape_sequences_is_printed_escaped(tmp_path: Path, fmt: str) -> None:
    text = (SPECS / "digits.yaml").read_text(encoding="utf-8")
    spec = tmp_path / "esc.yaml"
    # A title change (OSC 0) and a screen clear (CSI 2J) in the name.
    lines = [line for line in text.splitlines() if not line.startswith("name:")]
    spec.write_text('name: "\\e]0;PWNED\\a\\e[2Jx"\n' + "\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("summary", str(spec), "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "PWNED" in result.stdout
