"""`cnnspec validate --strict`: every warning is reported as an error and fails the run (exit 1), as CI wants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Valid, with one warning: the output of layer `a` is read by nothing.
UNUSED = """\
name: unused
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - relu: {id: a}
    - flatten: {id: flat, inputs: [input]}
    - linear: {out_features: 10}
"""
WARNING = "the output of 'a' is never used"


def cnnspec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_a_warning_passes_validate_but_fails_validate_strict_reported_as_an_error(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(UNUSED, encoding="utf-8")
    plain = cnnspec("validate", "spec.yaml", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert f"spec.yaml:5:13: warning: {WARNING}" in plain.stderr

    strict = cnnspec("validate", "--strict", "spec.yaml", cwd=tmp_path)
    assert strict.returncode == 1, strict.stderr
    assert f"spec.yaml:5:13: error: {WARNING}" in strict.stderr
    assert "warning:" not in strict.stderr and "Traceback" not in strict.stderr
    assert "ok (" not in strict.stdout  # not reported valid


def test_validate_strict_reports_the_warning_as_an_error_in_json_and_github_formats(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(UNUSED, encoding="utf-8")
    as_json = cnnspec("validate", "--strict", "--format", "json", "spec.yaml", cwd=tmp_path)
    assert as_json.returncode == 1
    (report,) = json.loads(as_json.stdout)
    assert report["valid"] is False
    assert [(d["severity"], d["message"]) for d in report["diagnostics"]] == [("error", WARNING)]

    github = cnnspec("validate", "--strict", "--format", "github", "spec.yaml", cwd=tmp_path)
    assert github.returncode == 1
    assert github.stdout.startswith(f"::error file=spec.yaml,line=5,col=13::{WARNING}")


def test_validate_strict_passes_specs_without_warnings_and_says_so_in_help() -> None:
    proc = cnnspec("validate", "--strict", "specs/digits.yaml", "specs/small_cnn.yaml", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "2 of 2 specs valid" in proc.stdout
    help_text = cnnspec("validate", "--help", cwd=ROOT).stdout
    assert "--strict" in help_text and "warnings" in help_text.lower()
