"""The checked-in JSON Schema: up to date, valid, accepting every example spec, documented."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cnnspec.layers import LAYER_KINDS, REGISTRY
from cnnspec.spec.schema import item_kinds, json_schema_text
from cnnspec.spec.source import parse_yaml, read_spec_text
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "cnnspec.schema.json"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def test_checked_in_schema_is_current() -> None:
    """Fails when a model changed without `cnnspec schema -o schemas/cnnspec.schema.json`."""
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), (
        "schemas/cnnspec.schema.json is stale: run `cnnspec schema -o schemas/cnnspec.schema.json`"
    )


def test_schema_command_prints_the_checked_in_schema(tmp_path: Path) -> None:
    result = run_cli("schema")
    assert result.exit_code == 0
    assert result.stdout == SCHEMA_FILE.read_text(encoding="utf-8")
    out = tmp_path / "schema.json"
    assert run_cli("schema", "--out", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8") == result.stdout


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_example_spec_is_valid_under_the_schema(spec: Path) -> None:
    """An editor using the schema flags nothing in a valid spec."""
    data, _ = parse_yaml(read_spec_text(spec), str(spec))
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(data), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_every_example_spec_points_editors_at_the_schema() -> None:
    for spec in SPECS:
        first = spec.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/cnnspec.schema.json", spec.name


def test_schema_rejects_what_the_loader_rejects() -> None:
    """A few invalid documents the editor should flag as well (the schema is not too loose)."""
    validator = jsonschema.Draft202012Validator(schema())
    model: dict[str, Any] = {"input": {"channels": 3, "height": 8, "width": 8}, "layers": ["relu"]}
    good: dict[str, Any] = {"name": "x", "model": model}
    assert not list(validator.iter_errors(good))
    bad_layers = [["rellu"], [{"conv2d": {"out_channels": 8}}], [{"conv2d": {"out_channels": 8, "kernal_size": 3}}]]
    for layers in bad_layers:
        assert list(validator.iter_errors({**good, "model": {**model, "layers": layers}})), layers
    assert list(validator.iter_errors({**good, "optimiser": {}}))


def properties(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (path, schema) under a `properties` keyword, anywhere in the schema."""
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{where}.{name}", sub
        for key, value in node.items():
            yield from properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from properties(value, f"{where}[{i}]")


def test_every_property_has_a_description() -> None:
    """Descriptions are the hover text editors show: none may be missing.

    pydantic leaves a field's description out when it equals that of the model the field
    refers to (`$ref`); editors then show the model's, so that counts too.
    """
    whole = schema()
    defs = whole["$defs"]
    found = list(properties(whole))
    assert len(found) > 200

    def described(sub: dict[str, Any]) -> bool:
        target = sub.get("$ref", "").rsplit("/", 1)[-1]
        return bool(sub.get("description") or (target and defs[target].get("description")))

    missing = [where for where, sub in found if not described(sub)]
    assert not missing, missing


def test_every_layer_kind_is_in_the_schema() -> None:
    defs = schema()["$defs"]
    refs, bare = item_kinds(defs["LayerItem"])
    assert set(refs) == set(REGISTRY)
    assert all(r in defs for r in refs.values())
    assert bare == LAYER_KINDS.bare()
