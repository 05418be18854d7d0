"""The JSON Schema as an editor uses it: the real yaml-language-server (from npm), driven over stdio.

What a user sees in VS Code (or any editor on yaml-language-server) with the schema: completion in
a layer list and in a layer's parameters, hovers, and diagnostics for a mistyped key or kind. One
server for the module (it starts in about a second); skipped, with the command that installs it,
where yaml-language-server or node is missing (.ci/run installs it). Never the network: the schema
is a local file.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnnspec.layers import REGISTRY
from tests.spec.lsp_client import YLS_VERSION, LanguageClient, find_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "specs").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../schemas/cnnspec.schema.json\n"
HEAD = "name: x\nmodel:\n  input: {channels: 1, height: 8, width: 8}\n  layers:\n"

# The documents the editor has open (under specs/, beside schemas/ as in this repository).
DOCUMENTS = {
    "layers.yaml": HEAD + "    - relu\n    - \n",  # the cursor on the new item's empty line
    # `- conv2d: {}` with a first letter typed between the braces (yaml-language-server 2.0 answers
    # an empty `{}` with nothing), and the same layer in block style, on the empty line under it.
    "conv_flow.yaml": HEAD + "    - conv2d: {k}\n",
    "conv_block.yaml": HEAD + "    - conv2d:\n        \n",
    "hover.yaml": "name: x\noptimizer:\n  lr: 0.05\nmodel:\n  input: {channels: 1, height: 8, width: 8}\n  layers:\n"
    "    - conv2d: {id: a, out_channels: 8, kernel_size: 3, stride: 2}\n    - relu: {inputs: [a]}\n",
    "typo_key.yaml": HEAD + "    - conv2d: {out_channels: 8, kernal_size: 3}\n",
    "typo_kind.yaml": HEAD + "    - conv2dd: {out_channels: 8}\n    - rellu\n    - conv2d\n",
}
CLASS_NAMES = {cls.__name__ for cls in REGISTRY.values()}


def position(text: str, needle: str, after: int = 0) -> dict[str, int]:
    """The LSP position `after` characters into the first `needle` in `text`."""
    offset = text.index(needle) + after
    line = text.count("\n", 0, offset)
    return {"line": line, "character": offset - (text.rfind("\n", 0, offset) + 1)}


class Editor:
    """The server, the documents it has open (name → URI and text), and the server's version."""

    def __init__(self, client: LanguageClient, folder: Path, version: str):
        self.client, self.folder, self.version = client, folder, version
        self.texts: dict[str, str] = {}

    def uri(self, name: str) -> str:
        return (self.folder / "specs" / name).as_uri()

    def open(self, name: str, text: str) -> None:
        self.texts[name] = text
        document = {"uri": self.uri(name), "languageId": "yaml", "version": 1, "text": text}
        self.client.notify("textDocument/didOpen", {"textDocument": document})

    def diagnostics(self, name: str, expect: str | None = None) -> list[dict[str, Any]]:
        """The document's diagnostics; with `expect`, the first publication that has a message containing it
        (the first may come before the schema is read)."""
        uri = self.uri(name)
        if expect is None:
            return self.client.published(uri)

        def has(message: dict[str, Any]) -> bool:
            params = message.get("params", {})
            return params.get("uri") == uri and any(expect in d["message"] for d in params["diagnostics"])

        if not any(expect in d["message"] for d in self.client.diagnostics.get(uri, [])):
            self.client.wait_for(has, f"a diagnostic with {expect!r} for {name}")
        return self.client.diagnostics[uri]

    def completion(self, name: str, needle: str, after: int) -> list[str]:
        at = {"textDocument": {"uri": self.uri(name)}, "position": position(self.texts[name], needle, after)}
        result = self.client.request("textDocument/completion", at)
        items = result["items"] if isinstance(result, dict) else result or []
        return [item["label"] for item in items]

    def hover(self, name: str, needle: str) -> str:
        at = {"textDocument": {"uri": self.uri(name)}, "position": position(self.texts[name], needle, 1)}
        result = self.client.request("textDocument/hover", at)
        assert result, f"no hover on {needle!r} (yaml-language-server {self.version})"
        return str(result["contents"]["value"])


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Editor]:
    command, reason = find_server()
    if command is None:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("editor")
    schema = folder / "schemas" / "cnnspec.schema.json"
    schema.parent.mkdir()
    # The checked-in schema (tests/spec/test_schema.py checks it is current): what a user's editor reads.
    shutil.copyfile(ROOT / "schemas" / "cnnspec.schema.json", schema)
    (folder / "specs").mkdir()
    # The editor's settings: the schema for every *.yaml (VS Code's `yaml.schemas`).
    settings = {"yaml": {"schemas": {schema.as_uri(): "*.yaml"}, "validate": True, "hover": True, "completion": True}}
    client = LanguageClient([command, "--stdio"], settings)
    try:
        capabilities = {
            "workspace": {"configuration": True},
            "textDocument": {"hover": {"contentFormat": ["markdown", "plaintext"]}},
        }
        params = {"processId": None, "rootUri": folder.as_uri(), "capabilities": capabilities}
        answer = client.request("initialize", params)
        version = answer.get("serverInfo", {}).get("version", "unknown")
        client.notify("initialized", {})
        client.notify("workspace/didChangeConfiguration", {"settings": settings})
        ed = Editor(client, folder, f"{version}, tests written against {YLS_VERSION}")
        for name, text in DOCUMENTS.items():
            ed.open(name, text)
        # The schema is read once the mistyped key is flagged: completion and hovers see it from then on.
        ed.diagnostics("typo_key.yaml", expect="kernal_size")
        yield ed
    finally:
        client.close()


def test_completion_in_a_layer_list_offers_every_kind_once_by_its_name(editor: Editor) -> None:
    labels = editor.completion("layers.yaml", "    - \n", len("    - "))
    assert Counter(labels) == Counter(list(REGISTRY)), f"yaml-language-server {editor.version}: {labels}"
    assert not CLASS_NAMES & set(labels)


CONV2D_PLACES = [("conv_flow.yaml", "{k}", 2), ("conv_block.yaml", "\n        \n", 9)]


@pytest.mark.parametrize(("name", "needle", "after"), CONV2D_PLACES)
def test_completion_in_a_conv2d_offers_its_parameters_once(editor: Editor, name: str, needle: str, after: int) -> None:
    labels = editor.completion(name, needle, after)
    assert {"out_channels", "kernel_size", "stride", "padding"} <= set(labels), labels
    assert max(Counter(labels).values()) == 1, labels
    # Besides the keys: one item that writes the required ones, named by the kind.
    assert set(labels) <= set(REGISTRY["conv2d"].model_fields) | {"conv2d"}, labels


def test_hover_on_a_key_shows_its_description_type_and_default(editor: Editor) -> None:
    kernel = editor.hover("hover.yaml", "kernel_size")
    assert "Kernel size: k or [kH, kW]." in kernel
    assert "**type** int > 0 or [int > 0, int > 0]" in kernel and "**required**" in kernel, kernel
    stride = editor.hover("hover.yaml", "stride")
    assert "Stride" in stride and "**default** `1`" in stride, stride
    lr = editor.hover("hover.yaml", "lr")
    assert "Learning rate" in lr and "**type** number > 0" in lr and "**default** `0.1`" in lr, lr


@pytest.mark.parametrize("needle", ["kernel_size", "lr", "inputs", "conv2d", "optimizer"])
def test_hover_headings_are_spec_names_never_field_titles_or_repeats(editor: Editor, needle: str) -> None:
    """pydantic's field titles (`Kernel Size`, `Lr`) and yaml-language-server's joined ones
    (`Inputs || Inputs`) are gone; a heading, where there is one, is a mapping's name in the spec."""
    text = editor.hover("hover.yaml", needle)
    headings = re.findall(r"^#### (.*)$", text, re.MULTILINE)
    assert "||" not in text, text
    assert all(h in {"conv2d", "relu", "optimizer"} for h in headings), text


def test_a_mistyped_key_is_named_where_it_is(editor: Editor) -> None:
    found = editor.diagnostics("typo_key.yaml", expect="kernal_size")
    (typo,) = [d for d in found if "kernal_size" in d["message"]]
    assert typo["message"] == "Property kernal_size is not allowed."
    assert typo["range"]["start"] == position(editor.texts["typo_key.yaml"], "kernal_size"), found


def test_a_mistyped_kind_is_named_and_answered_with_every_kind(editor: Editor) -> None:
    text = editor.texts["typo_kind.yaml"]
    found = editor.diagnostics("typo_kind.yaml", expect="conv2dd")
    at_key = [d["message"] for d in found if d["range"]["start"] == position(text, "conv2dd")]
    assert "Property conv2dd is not allowed." in at_key, found
    (listing,) = [m for m in at_key if m.startswith("Unknown layer kind.")]
    assert set(re.findall(r"\w+", listing.split(":", 1)[1])) == set(REGISTRY), listing
    # A bare name: a typo is answered with every kind too, a kind that needs parameters says so.
    (bare_typo,) = [d["message"] for d in found if d["range"]["start"] == position(text, "rellu")]
    assert bare_typo == listing
    (needs,) = [d["message"] for d in found if d["range"]["start"] == position(text, "conv2d\n")]
    assert needs.startswith("This layer kind needs parameters: write `- NAME: {PARAMS}`."), needs


def test_the_modeline_of_the_docs_points_the_editor_at_the_schema(editor: Editor) -> None:
    """A `.yml` file, which the settings do not map: only its first line names the schema."""
    editor.open("modeline.yml", MODELINE + HEAD + "    - conv2d: {out_channels: 8, kernal_size: 3}\n")
    found = editor.diagnostics("modeline.yml", expect="kernal_size")
    assert "Property kernal_size is not allowed." in [d["message"] for d in found]


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.name)
def test_the_example_specs_have_no_diagnostics(editor: Editor, spec: Path) -> None:
    """The editor's validator (not the jsonschema package's) flags nothing in a valid spec."""
    editor.open(spec.name, spec.read_text(encoding="utf-8"))
    assert editor.diagnostics(spec.name) == [], f"yaml-language-server {editor.version}"


def test_ci_installs_the_server_the_tests_are_written_against() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"yaml-language-server@{YLS_VERSION}" in script and '--prefix "$HOME/.cache/cnnspec-yls"' in script
