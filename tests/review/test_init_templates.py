"""`cnnspec init`: templates shipped as package data, the $schema line, never overwriting."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnspec.errors import SpecError
from cnnspec.review import templates
from cnnspec.spec.schema import SCHEMA_ID
from tests.review.review_helpers import ROOT, SPECS, cnnspec

TEMPLATE_DIR = ROOT / "cnnspec" / "templates"
SCHEMA_PREFIX = "# yaml-language-server: $schema="


def test_the_four_templates_are_shipped() -> None:
    assert templates.template_names() == ["deeper-cnn", "digits", "resnet18-transfer", "small-cnn"]


@pytest.mark.parametrize("name", ["small-cnn", "deeper-cnn", "resnet18-transfer", "digits"])
def test_template_equals_the_shipped_spec_except_the_schema_line(name: str) -> None:
    file = templates.file_name(name)
    template = (TEMPLATE_DIR / file).read_text(encoding="utf-8").splitlines()
    spec = (SPECS / file).read_text(encoding="utf-8").splitlines()
    assert template[0].startswith(SCHEMA_PREFIX) and spec[0].startswith(SCHEMA_PREFIX)
    assert template[1:] == spec[1:], f"cnnspec/templates/{file} differs from specs/{file}: copy the spec over it"
    assert templates.template_text(name) == (TEMPLATE_DIR / file).read_text(encoding="utf-8")  # package data


def test_init_points_at_the_schema_folder_when_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "cnnspec.schema.json").write_text("{}")
    proc = cnnspec("init", "digits", "specs/mine.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "specs" / "mine.yaml").read_text(encoding="utf-8")
    assert written.splitlines()[0] == f"{SCHEMA_PREFIX}../schemas/cnnspec.schema.json"
    assert written.splitlines()[1:] == (SPECS / "digits.yaml").read_text(encoding="utf-8").splitlines()[1:]
    # What init writes is valid and already formatted.
    assert cnnspec("validate", "specs/mine.yaml", cwd=tmp_path).returncode == 0
    assert cnnspec("fmt", "--check", "specs/mine.yaml", cwd=tmp_path).returncode == 0


def test_init_uses_the_schema_url_elsewhere_and_the_template_file_name(tmp_path: Path) -> None:
    proc = cnnspec("init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "small_cnn.yaml").read_text(encoding="utf-8")
    assert written.splitlines()[0] == f"{SCHEMA_PREFIX}{SCHEMA_ID}"
    assert "name: small-cnn" in written
    (tmp_path / "models").mkdir()
    target = templates.init("resnet18_transfer", tmp_path / "models")  # a folder: the template's file name inside
    assert target == tmp_path / "models" / "resnet18_transfer.yaml" and target.is_file()


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    existing = tmp_path / "spec.yaml"
    existing.write_text("mine\n")
    proc = cnnspec("init", "deeper-cnn", str(existing))
    assert proc.returncode == 1
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert existing.read_text() == "mine\n"


def test_init_over_an_existing_file_gives_its_hint(tmp_path: Path) -> None:
    existing = tmp_path / "spec.yaml"
    existing.write_text("mine\n")
    with pytest.raises(SpecError) as info:
        templates.init("deeper-cnn", existing)
    (d,) = info.value.diagnostics
    assert d.hint == "choose another path, or delete the file first"
    assert existing.read_text() == "mine\n"


def test_unknown_template_names_the_closest(tmp_path: Path) -> None:
    proc = cnnspec("init", "small_cn", str(tmp_path / "x.yaml"))
    assert proc.returncode == 1
    assert "no template 'small_cn'" in proc.stderr and "did you mean 'small-cnn'?" in proc.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_init_list() -> None:
    proc = cnnspec("init", "--list")
    assert proc.returncode == 0
    assert proc.stdout.split() == ["deeper-cnn", "digits", "resnet18-transfer", "small-cnn"]
