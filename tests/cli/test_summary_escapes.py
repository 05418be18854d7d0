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


def test_a_spec_name_with_markup_is_shown_as_text_in_the_markdown_summary(tmp_path: Path) -> None:
    """The Markdown summary goes into pull-request comments: a name's HTML must render as its characters."""
    from markdown_it import MarkdownIt

    text = (SPECS / "digits.yaml").read_text(encoding="utf-8")
    spec = tmp_path / "markup.yaml"
    lines = [line for line in text.splitlines() if not line.startswith("name:")]
    name = "x</details><img src=https://e.example/p.png>**bold** `tick`"
    spec.write_text(f"name: '{name}'\n" + "\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("summary", str(spec), "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(result.stdout)
    assert "<img" not in html and "</details>" not in html and "<code>" not in html.split("\n")[0]
    first_paragraph = html.split("</strong>")[0]
    assert "&lt;img src=https://e.example/p.png&gt;**bold** `tick`" in first_paragraph
