"""A spec's strings in `cnnspec diff`'s text and Markdown: shown as written, never acted on.

The text report goes to a terminal: an escape sequence in a spec's name or a value (`ESC]0;…BEL`
sets the window title, `ESC[2J` clears the screen) is printed as `\\x1b…`, as `summary` prints it.
The Markdown report is a pull-request comment: a backtick, `</details>`, an `<img>` tag, a `|` or an
`@mention` in a value, a name or a file name is text there. The Markdown is read back with
markdown-it-py (CommonMark with GFM tables, raw HTML allowed as GitHub allows it), not with our own code.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from markdown_it import MarkdownIt

from tests.cli_helpers import run_cli

SPEC = """\
name: {name}
model:
  input: {{channels: 3, height: 64, width: 64}}
  layers:
    - torchvision: {{id: backbone, model: resnet18, weights: {weights}, freeze: true}}
    - linear: {{id: fc, out_features: 10}}
data:
  dataset: {{name: cifar10, root: {root}}}
  batch_size: 128
  resize: 64
"""

INJECTED = "x`y``</details><img src=q onerror=alert(1)>|@someone $a$ [l](http://e)"


def specs(tmp_path: Path, old_name: str = "old.yaml", new_name: str = "new.yaml") -> tuple[Path, Path]:
    old, new = tmp_path / old_name, tmp_path / new_name
    old.write_text(SPEC.format(name="plain", weights="a.pth", root="x"))
    new.write_text(
        SPEC.format(name='"t\\e]0;pwned\\a"', weights=f"'{INJECTED.replace(chr(39), chr(39) * 2)}'", root='"y\\e[2J"')
    )
    return old, new


def test_text_diff_writes_escape_sequences_from_the_specs_as_escapes(tmp_path: Path) -> None:
    old, new = specs(tmp_path)
    result = run_cli("diff", str(old), str(new))
    assert result.exit_code == 1, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "t\\x1b]0;pwned\\x07" in result.stdout  # the name, in the title and the settings
    assert "y\\x1b[2J" in result.stdout  # a value


def test_text_diff_to_a_file_escapes_too(tmp_path: Path) -> None:
    old, new = specs(tmp_path)
    out = tmp_path / "report.txt"
    result = run_cli("diff", str(old), str(new), "-o", str(out))
    assert result.exit_code == 1, result.stderr
    text = out.read_text()
    assert "\x1b" not in text and "y\\x1b[2J" in text


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.code: list[str] = []
        self._in_code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_code += tag == "code"

    def handle_endtag(self, tag: str) -> None:
        self.tags.append("/" + tag)
        self._in_code -= tag == "code"

    def handle_data(self, data: str) -> None:
        (self.code if self._in_code else self.text).append(data)


def rendered(markdown: str) -> Tags:
    parser = Tags()
    parser.feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))
    return parser


def test_markdown_diff_shows_user_strings_as_text_and_injects_no_markup(tmp_path: Path) -> None:
    old, new = specs(tmp_path, "o`ld.yaml", "n``ew|<b>.yaml")
    result = run_cli("diff", str(old), str(new), "-f", "markdown")
    assert result.exit_code == 1, result.stderr
    page = rendered(result.stdout)
    assert "img" not in page.tags and "b" not in page.tags and "a" not in page.tags
    # our own <details> blocks open and close in pairs: none was closed early by a value
    assert page.tags.count("details") == page.tags.count("/details") == 1
    text = "".join(page.text)
    assert f"a.pth → {INJECTED}" in text  # the changed value, every character shown
    assert "t\\x1b]0;pwned\\x07" in text and "\x1b" not in result.stdout
    assert str(old) in page.code and str(new) in page.code  # the file names, backticks and all


def test_markdown_code_spans_keep_backticks_and_table_cells_keep_pipes() -> None:
    from cnnspec.render import markdown as md

    for value in ("a`b", "``", "`x", "x `", " y ", "p|q", "<img src=x>"):
        page = rendered(f"- {md.code(value)}\n\n| c |\n|---|\n| {md.code(value, cell=True)} |\n")
        assert page.code == [value, value], value
        page = rendered(f"- {md.text(value)}\n")
        assert "".join(page.text).strip() == value.strip(), value


def test_html_diff_and_graph_write_control_characters_as_escapes(tmp_path: Path) -> None:
    """A raw ESC or BEL from a spec's name or a file name never reaches the HTML page (its <h1>, <title>)."""
    old, new = specs(tmp_path, new_name="n\x1b[31mew.yaml")
    page = tmp_path / "diff.html"
    assert run_cli("diff", str(old), str(new), "--format", "html", "-o", str(page)).exit_code == 1
    drawing = tmp_path / "graph.html"
    assert run_cli("graph", str(new), "-o", str(drawing)).exit_code == 0
    for html in (page.read_text(encoding="utf-8"), drawing.read_text(encoding="utf-8")):
        assert "\x1b" not in html and "\x07" not in html
    diff_head = page.read_text(encoding="utf-8").partition("</h1>")[0]
    assert "n\\x1b[31mew.yaml" in diff_head  # the file name, escaped, in the heading
    assert "<h1>t\\x1b]0;pwned\\x07</h1>" in drawing.read_text(encoding="utf-8")
