"""`cnnspec runs` and `cnnspec runs compare` on real tiny runs (one epoch on digits)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cnnspec.tracking.runs import list_runs
from tests.cli_helpers import run_cli
from tests.tracking._helpers import records, result, spec_file, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/base, runs/wide (another width and lr), runs/partial (no result.json), runs/broken (run.json damaged)."""
    folder = tmp_path_factory.mktemp("runs")
    spec = spec_file(folder / "specs")
    root = folder / "runs"
    train(spec, root / "base")
    train(spec, root / "wide", "model.layers.0.conv2d.out_channels=16", "optimizer.lr=0.02")
    shutil.copytree(root / "base", root / "partial")
    (root / "partial" / "result.json").unlink()
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run")
    return root


def params_of(run: Path) -> int:
    import cnnspec

    model = cnnspec.build(cnnspec.load(run / "spec.yaml"))
    return sum(p.numel() for p in model.parameters())


def test_one_row_per_run_with_its_figures(runs: Path) -> None:
    rows = {Path(r.run).name: r for r in list_runs([runs])}
    assert sorted(rows) == ["base", "broken", "partial", "wide"]
    base, wide = rows["base"], rows["wide"]
    assert (base.status, wide.status) == ("done", "done")
    assert base.params == params_of(runs / "base")  # counted statically; torch's count agrees
    assert wide.params == params_of(runs / "wide") != base.params
    assert base.test_accuracy == result(runs / "base")["test_accuracy"]
    assert base.best_val_accuracy == max(r["val_accuracy"] for r in records(runs / "base"))
    assert base.epochs == 1 and base.wall_seconds == result(runs / "base")["wall_seconds"]
    assert base.architecture == json.loads((runs / "base" / "run.json").read_text())["architecture_hash"][:12]
    assert base.architecture != wide.architecture
    assert base.name == "digits-fast" and base.device is not None and base.device.startswith("cpu")
    assert wide.macs is not None and base.macs is not None and wide.macs == 2 * base.macs  # conv and linear doubled


def test_partial_and_unreadable_runs_are_rows_with_a_status(runs: Path) -> None:
    rows = {Path(r.run).name: r for r in list_runs([runs])}
    assert rows["partial"].status == "partial"
    assert rows["partial"].test_accuracy is None and rows["partial"].epochs == 1
    assert rows["broken"].status == "unreadable"
    assert rows["broken"].problem is not None and "run.json" in rows["broken"].problem
    assert "not valid JSON" in rows["broken"].problem


def test_sort_puts_the_best_test_accuracy_first(runs: Path) -> None:
    rows = list_runs([runs], sort="test_accuracy")
    figures = [r.test_accuracy for r in rows]
    present = [f for f in figures if f is not None]
    assert present == sorted(present, reverse=True) and len(present) == 2
    assert figures[2:] == [None, None]  # the partial and broken runs last
    by_params = [r.params for r in list_runs([runs], sort="params") if r.params is not None]
    assert by_params == sorted(by_params) and by_params[0] < by_params[-1]


def test_cli_formats(runs: Path) -> None:
    text = run_cli("runs", str(runs))
    assert text.exit_code == 0, text.output
    assert "unreadable" in text.stdout and "digits-fast" in text.stdout
    assert "broken: unreadable: " in text.stdout
    data = json.loads(run_cli("runs", str(runs), "--format", "json", "--sort", "params").stdout)
    params = [r["params"] for r in data]
    assert params[:3] == sorted(params[:3]) and params[3] is None  # ascending; the broken run (no count) last
    assert {r["status"] for r in data} == {"done", "partial", "unreadable"}
    markdown = run_cli("runs", str(runs), "-f", "markdown").stdout
    assert markdown.startswith("| run | status |") and markdown.count("\n|") == 5  # the rule and four rows


def test_cli_default_folder_is_runs(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(runs.parent)
    data = json.loads(run_cli("runs", "-f", "json").stdout)
    assert sorted(Path(r["run"]).name for r in data) == ["base", "broken", "partial", "wide"]


def test_cli_refuses_an_unknown_column(runs: Path) -> None:
    refused = run_cli("runs", str(runs), "--sort", "accuracy")
    assert refused.exit_code == 2
    assert "no column 'accuracy'" in refused.output


def test_compare_overlays_curves_and_diffs_the_specs(runs: Path, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "compare.png"
    out = run_cli("runs", "compare", str(runs / "base"), str(runs / "wide"), "-o", str(png), "-f", "json")
    assert out.exit_code == 0, out.output
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 500
    data = json.loads(out.stdout)
    assert [r["label"] for r in data["runs"]] == ["base", "wide"]
    (arch,) = data["architecture"]
    assert arch["old"] == "base" and arch["new"] == "wide"
    assert "out_channels" in json.dumps(arch["changed"])
    settings = {s["key"]: s["values"] for s in data["settings"]}
    assert settings == {"optimizer.lr": [0.05, 0.02]}  # the architecture is the diff's, not a setting


def test_compare_text_and_markdown(runs: Path) -> None:
    text = run_cli("runs", "compare", str(runs / "base"), str(runs / "wide")).stdout
    assert "architecture: wide against base" in text
    assert "optimizer.lr" in text and "0.02" in text
    markdown = run_cli("runs", "compare", str(runs / "base"), str(runs / "wide"), "-f", "markdown").stdout
    assert "### Settings that differ" in markdown and "| `optimizer.lr` | 0.05 | 0.02 |" in markdown


def test_compare_names_an_unreadable_run(runs: Path) -> None:
    refused = run_cli("runs", "compare", str(runs / "base"), str(runs / "broken"))
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"{runs / 'broken' / 'run.json'}: error: not valid JSON")


def test_runs_and_compare_import_no_torch(runs: Path) -> None:
    from tests.cli.test_no_torch import ROOT, probe

    for args in (["runs", str(runs)], ["runs", "compare", str(runs / "base"), str(runs / "wide")]):
        report, stderr = probe(args, ROOT)
        assert report == {"code": 0, "heavy": []}, stderr
