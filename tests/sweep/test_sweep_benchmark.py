"""benchmarks/sweep.py keeps running: --dry, both sweeps, and the figures it prints are its studies' own."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sweep.py"


@pytest.mark.slow
def test_sweep_benchmark_reports_the_figures_its_studies_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    spec = importlib.util.spec_from_file_location("sweep_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.main(["--dry", "--keep", str(tmp_path)])
    out = capsys.readouterr().out

    # The expected figures are read here from the two studies the script kept, with Optuna's own reader.
    def trials(folder: str) -> list[optuna.trial.FrozenTrial]:
        url = f"sqlite:///{tmp_path / folder / 'study.db'}"
        study = optuna.load_study(study_name="digits-sweep", storage=url)
        return sorted(study.get_trials(), key=lambda t: t.number)

    pruned, full = trials("pruned"), trials("to_the_end")
    assert len(pruned) == len(full) == 4
    assert [t.params for t in pruned] == [t.params for t in full]  # the same candidates, in order
    rejected = [t for t in pruned if t.params["model.layers.3.conv2d.kernel_size"] == 11]
    assert figures["rejected"] == [t.number for t in rejected]
    assert figures["check_ms"] == [t.user_attrs["check_ms"] for t in rejected]
    if rejected:
        printed = re.search(r"static check per rejected trial: max ([0-9.]+) ms", out)
        assert printed is not None, out
        assert float(printed.group(1)) == pytest.approx(max(figures["check_ms"]), abs=0.05)  # 1 decimal
    ratio = re.search(r"^ratio pruned ÷ to the end: ([0-9.]+)×$", out, re.M)
    assert ratio is not None, out
    assert float(ratio.group(1)) == pytest.approx(figures["pruned_seconds"] / figures["full_seconds"], abs=0.005)
    completed = [t for t in pruned if t.state == optuna.trial.TrialState.COMPLETE]
    if completed:
        best = max(completed, key=lambda t: t.value or 0.0)
        assert figures["best_value"] == best.value
        assert f"best trial: {best.number}," in out
        assert figures["retrain_ok"], out
        assert (tmp_path / "retrain" / "result.json").is_file()
