"""`cnnspec summary` against golden files, ResNet-18's known figures, the plot; `validate`'s formats.

Regenerate the golden files after an intended change with
    CNNSPEC_UPDATE_GOLDEN=1 pytest tests/cli/test_summary_and_formats.py
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
UPDATE = os.environ.get("CNNSPEC_UPDATE_GOLDEN") == "1"
SUFFIX = {"json": "json", "markdown": "md", "text": "txt"}


def invoke(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `cnnspec ARGS`; an exception other than a clean exit fails the test."""
    # A fixed width for the text table; piped output is drawn at its natural width anyway.
    result = run_cli(*args, env={"COLUMNS": "120"})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("fmt", list(SUFFIX))
@pytest.mark.parametrize("spec", ["small_cnn", "resnet18"])
def test_summary_matches_golden_file(spec: str, fmt: str) -> None:
    code, out, err = invoke("summary", f"specs/{spec}.yaml", "--format", fmt)
    assert code == 0, err
    golden = GOLDEN / f"{spec}.{SUFFIX[fmt]}"
    if UPDATE:
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8"), f"{golden.name} differs: see the module docstring to update"


def test_resnet18_matches_torchvision_figures() -> None:
    """torchvision lists ResNet-18 at 11,689,512 parameters and 1.81 GFLOPS (multiply-accumulates)."""
    code, out, _ = invoke("summary", "specs/resnet18.yaml", "--format", "json")
    assert code == 0
    summary = json.loads(out)
    assert summary["total_params"] == 11_689_512
    assert summary["trainable_params"] == 11_689_512
    assert abs(summary["macs"] - 1.82e9) / 1.82e9 < 0.01
    assert summary["output_shape"] == [1000]
    by_id = {row["id"]: row for row in summary["layers"]}
    # The receptive field and effective stride of the last residual stage, as published for ResNet-18.
    assert by_id["layer4.1.relu"]["receptive_field"] == 435
    assert by_id["layer4.1.relu"]["stride"] == 32
    for row in summary["layers"]:
        assert {"id", "kind", "output_shape", "params", "macs", "receptive_field"} <= set(row)


def test_small_cnn_figures_match_the_seed() -> None:
    """Seed §3: Linear(64·8·8, 128) after two pools on 32×32 input; 545,290 parameters."""
    summary = json.loads(invoke("summary", "specs/small_cnn.yaml", "--format", "json")[1])
    assert summary["total_params"] == 545_290
    linear = next(r for r in summary["layers"] if r["kind"] == "linear")
    assert linear["params"] == 64 * 8 * 8 * 128 + 128


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_an_estimated_macs_figure_is_marked_in_the_row_and_the_total(fmt: str) -> None:
    code, out, err = invoke("summary", "specs/resnet18_transfer.yaml", "--format", fmt)
    assert code == 0, err
    lines = out.splitlines()
    backbone_row = next(line for line in lines if "torchvision" in line)
    linear_row = next(line for line in lines if "linear" in line)
    total = next(line for line in lines if "MACs per image" in line or "MACs:" in line)
    assert "≈" in backbone_row
    assert "≈" in total
    assert "≈" not in linear_row


def test_an_exact_summary_has_no_estimate_mark() -> None:
    code, out, _ = invoke("summary", "specs/small_cnn.yaml", "--format", "json")
    assert code == 0
    assert json.loads(out)["estimated_macs"] == []


def test_summary_plot_writes_a_png(tmp_path: Path) -> None:
    png = tmp_path / "rf.png"
    code, _, err = invoke("summary", "specs/resnet18.yaml", "--plot", str(png))
    assert code == 0
    assert f"wrote {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        width, height = image.size
        assert width >= 600 and height >= 400
        # Not a blank canvas: the two curves and labels put many colours in it.
        assert len(image.convert("RGB").getcolors(maxcolors=100_000) or []) > 50


def test_summary_of_an_invalid_spec_fails_located() -> None:
    code, out, err = invoke("summary", "tests/fixtures/invalid/conv_output_too_small.yaml")
    assert code == 1
    assert out == ""
    assert "tests/fixtures/invalid/conv_output_too_small.yaml:6:15: error: conv2d output would be -2×-2" in err


# --- validate's output formats ------------------------------------------------------------

INVALID = "tests/fixtures/invalid/linear_in_features_mismatch.yaml"


def test_validate_github_format_prints_annotations() -> None:
    code, out, _ = invoke("validate", "--format", "github", INVALID, "specs/small_cnn.yaml")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"::error file={INVALID},line=10,col=29::linear expects in_features=4096")
    # A multi-line message is one annotation: newlines are %0A-escaped.
    assert "%0Ahint: drop in_features and let cnnspec infer it" in lines[0]
    assert all(line.startswith(("::error ", "::warning ")) for line in lines)


def test_validate_json_format_parses() -> None:
    code, out, _ = invoke("validate", "--format", "json", INVALID, "specs/resnet18.yaml")
    assert code == 1
    report = json.loads(out)
    assert [r["valid"] for r in report] == [False, True]
    bad, good = report
    assert bad["diagnostics"][0] | {"notes": None} == {
        "file": INVALID,
        "line": 10,
        "col": 29,
        "severity": "error",
        "message": "linear expects in_features=4096 but its input has 16384 features",
        "notes": None,
        "hint": "drop in_features and let cnnspec infer it",
    }
    assert good["total_params"] == 11_689_512 and good["diagnostics"] == []


def test_validate_all_example_specs() -> None:
    specs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
    code, out, err = invoke("validate", *specs)
    assert code == 0, err
    assert f"{len(specs)} of {len(specs)} specs valid" in out
    assert err == ""  # no warnings either


def test_validate_usage_errors_exit_2() -> None:
    assert invoke("validate")[0] == 2
    assert invoke("validate", "--format", "xml", "specs/small_cnn.yaml")[0] == 2


def test_unwritable_outputs_are_user_errors(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    code, _, err = invoke("summary", "specs/small_cnn.yaml", "--plot", str(missing / "rf.png"))
    assert code == 1 and f"error: cannot write {missing / 'rf.png'}" in err
    code, _, err = invoke("schema", "--out", str(missing / "schema.json"))
    assert code == 1 and f"error: cannot write {missing / 'schema.json'}" in err


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_summary_shows_the_vars_its_figures_were_computed_with(fmt: str) -> None:
    code, out, err = invoke("summary", "tests/fixtures/expressions/family.yaml", "--format", fmt)
    assert code == 0, err
    assert "Vars: width=1, depth=1, stem=32" in out.splitlines()


def test_summary_json_has_the_vars() -> None:
    code, out, _ = invoke("summary", "tests/fixtures/expressions/family.yaml", "--format", "json")
    assert code == 0
    assert json.loads(out)["vars"] == {"width": 1.0, "depth": 1.0, "stem": 32}
