"""docs/spec-language.md's reference tables are generated from the schema; they must be current."""

from __future__ import annotations

from pathlib import Path

from cnnspec.layers import REGISTRY
from cnnspec.render.spec_tables import generated_part, reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "spec-language.md"


def test_generated_reference_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert generated_part(text) == reference_markdown(), (
        "docs/spec-language.md is stale: run `python -m cnnspec.render.spec_tables docs/spec-language.md`"
    )


def test_every_layer_kind_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for kind in REGISTRY:
        assert f"#### `{kind}`" in text, kind
        assert f"`{kind}`" in text.split("<!-- BEGIN")[0], f"{kind} is not named in the prose"
