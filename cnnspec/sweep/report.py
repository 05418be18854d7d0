"""What a sweep leaves: the trials table (rows), SWEEP/best.yaml, importances and parallel coordinates as PNG."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnspec.sweep.space import best_spec_text

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    reason: str  # why it was pruned or failed ("" otherwise)


def _reason(t: optuna.trial.FrozenTrial, study_attrs: dict[str, Any]) -> str:
    from cnnspec.sweep.study import STALE_PREFIX

    text = t.user_attrs.get("pruned") or t.user_attrs.get("failed") or study_attrs.get(f"{STALE_PREFIX}{t.number}")
    return str(text).splitlines()[0] if text else ""


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    attrs = study.user_attrs
    return [
        TrialRow(t.number, t.state.name, dict(t.params), t.value, _reason(t, attrs))
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    ]


def render_table(rows: list[TrialRow]) -> str:
    lines = ["trial  state     objective  params  reason"]
    for r in rows:
        value = f"{r.value:.4f}" if r.value is not None else "-"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.params.items())
        lines.append(f"{r.number:5d}  {r.state:<8}  {value:>9}  {params}  {r.reason}")
    return "\n".join(lines)


def write_best(study: optuna.Study, spec_text: str, file: str, out: Path) -> Path | None:
    """SWEEP/best.yaml: the spec as written with the best trial's values; None without a completed trial."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    path = out / "best.yaml"
    text = f"# the best trial ({study.best_trial.number}) of the sweep in {out}, objective {study.best_value:.4f}\n"
    path.write_text(text + best_spec_text(spec_text, file, study.best_params))
    return path


def write_plots(study: optuna.Study, out: Path) -> list[Path]:
    """importances.png and parallel_coordinates.png; skipped (with a note) when too few trials completed."""
    import matplotlib.pyplot as plt  # optuna draws on pyplot's current figure
    import optuna.visualization.matplotlib as vis
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    written: list[Path] = []
    if len(done) < 2:
        return written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        for name, draw in (
            ("parallel_coordinates.png", vis.plot_parallel_coordinate),
            ("importances.png", vis.plot_param_importances),
        ):
            try:
                draw(study)
            except (ValueError, RuntimeError):  # importances of a parameter that never varied, say
                continue
            fig = plt.gcf()  # the figure optuna drew on (one Axes, or a grid of them)
            fig.savefig(out / name, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(out / name)
    return written
