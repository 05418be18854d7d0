"""Run directories found, read into rows (`cnnspec runs`), and compared (`cnnspec runs compare`). No torch.

A run is a folder with a run.json; `find_runs` looks under each folder given (not inside a run, nor in
hidden folders, at most `MAX_DEPTH` levels down). A run that cannot be read is a row with its status
and the reason, never an exception: `list_runs` reads what it can of every run.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnspec.errors import CnnspecError
from cnnspec.rundir.paths import RunPaths
from cnnspec.terminal import printable
from cnnspec.tracking.params import flatten
from cnnspec.tracking.records import read_metrics, read_result

if TYPE_CHECKING:
    from cnnspec.checker.graph import Graph
    from cnnspec.review.diff import SpecDiff
    from cnnspec.spec.model import Spec

MAX_DEPTH = 4  # runs/SWEEP/trial-3 is 2 levels under the folder given
# Folders the trackers write (copies of a run's files among them), never looked into.
TRACKER_FOLDERS = frozenset({"mlartifacts", "mlruns", "tensorboard"})
# Status of a row: trained to the end (result.json), partly (no result.json: running, interrupted or
# killed), not readable (run.json or spec.yaml), or damaged (metrics.jsonl or result.json holds what
# training never writes); the reason is in `problem`.
DONE, PARTIAL, UNREADABLE, DAMAGED = "done", "partial", "unreadable", "damaged"
# The columns `--sort` takes, and those that sort best first (highest).
COLUMNS = (
    "run",
    "status",
    "name",
    "architecture",
    "params",
    "macs",
    "epochs",
    "best_val_accuracy",
    "test_accuracy",
    "wall_seconds",
    "device",
)
BEST_FIRST = frozenset({"best_val_accuracy", "test_accuracy"})


@dataclass
class RunRow:
    """One run directory, as far as it could be read."""

    run: str  # the folder, as found under the folder given
    status: str  # DONE, PARTIAL, UNREADABLE or DAMAGED
    problem: str | None = None  # why it is unreadable or damaged (or what is partial about it)
    name: str | None = None
    architecture: str | None = None  # run.json's architecture hash, its first 12 hex digits
    params: int | None = None
    macs: int | None = None
    epochs: int | None = None  # completed
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    wall_seconds: float | None = None
    device: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def find_runs(folders: list[Path]) -> list[Path]:
    """The run directories under `folders` (a folder that is a run is itself), each once, in path order."""
    found: dict[Path, None] = {}
    for folder in folders:
        if RunPaths(folder).info.exists():
            found[folder] = None
            continue
        for root, dirs, _files in os.walk(folder, onerror=lambda _e: None):
            here = Path(root)
            depth = len(here.relative_to(folder).parts)
            keep = []
            for name in sorted(dirs):
                child = here / name
                if name.startswith(".") or name in TRACKER_FOLDERS or child.is_symlink():
                    continue
                if RunPaths(child).info.exists():
                    found[child] = None
                elif depth + 1 < MAX_DEPTH:
                    keep.append(name)
            dirs[:] = keep
    return sorted(found)


def read_row(run: Path) -> RunRow:
    """What `cnnspec runs` says about one run directory (never raises for a damaged run)."""
    from cnnspec.rundir.reader import open_run

    row = RunRow(str(run), UNREADABLE)
    try:
        opened = open_run(run)
    except CnnspecError as exc:
        row.problem = _first_line(exc)
        return row
    except (OSError, ValueError) as exc:
        row.problem = str(exc)
        return row
    info, graph = opened.info, opened.graph
    row.name, row.architecture = info.spec_name, info.architecture_hash[:12]
    row.params, row.macs = graph.total_params, graph.macs
    paths = opened.paths
    metrics, result = read_metrics(paths.metrics), read_result(paths.result)
    # A damaged record gives no figure at all: the best of what is left could be a wrong best.
    damaged = [note for note in (metrics.note(paths.metrics), result.note(paths.result)) if note]
    if damaged:
        row.status, row.problem = DAMAGED, "; ".join(damaged)
        return row
    row.epochs = len(metrics.records)
    accuracies = [r["val_accuracy"] for r in metrics.records if r.get("val_accuracy") is not None]
    row.best_val_accuracy = max(accuracies) if accuracies else None
    if not result.exists:
        row.status = PARTIAL
        row.problem = "no result.json: training did not finish (running, interrupted or stopped)"
        return row
    record = result.records[0]
    row.status = DONE
    row.epochs = record.get("epochs", row.epochs)
    row.test_accuracy = record.get("test_accuracy")
    row.wall_seconds = record.get("wall_seconds")
    row.device = record.get("device")
    return row


def list_runs(folders: list[Path], sort: str | None = None, reverse: bool = False) -> list[RunRow]:
    """Every run under `folders` as a row, sorted by the column `sort` (path order when None):
    best first for the accuracies, smallest first for the rest; rows without the figure last."""
    rows = [read_row(run) for run in find_runs(folders)]
    if sort is None:
        return rows[::-1] if reverse else rows
    if sort not in COLUMNS:
        raise ValueError(f"no column {sort!r}; the columns are {', '.join(COLUMNS)}")
    present = [r for r in rows if getattr(r, sort) is not None]
    absent = [r for r in rows if getattr(r, sort) is None]
    present.sort(key=lambda r: getattr(r, sort), reverse=(sort in BEST_FIRST) != reverse)
    return present + absent


def read_history(paths: RunPaths) -> list[dict[str, Any]]:
    """metrics.jsonl's epoch records that pass the checks of cnnspec.tracking.records (the others left out)."""
    return read_metrics(paths.metrics).records


def _first_line(exc: CnnspecError) -> str:
    return exc.format().splitlines()[0].removeprefix("error: ")


# --- compare -------------------------------------------------------------------------------


@dataclass
class RunCompared:
    label: str  # how the report names it: the folder's name, or more of its path when two share one
    row: RunRow
    spec: Spec
    graph: Graph
    history: list[dict[str, Any]]


@dataclass
class Comparison:
    """Runs side by side: their rows and curves, each architecture against the first one's, the settings
    that differ."""

    runs: list[RunCompared]
    architecture: list[SpecDiff]  # runs[i] against runs[0], for i ≥ 1 (cnnspec diff's)
    settings: list[tuple[str, list[Any]]] = field(default_factory=list)  # (key, value per run), differing only


def compare_runs(runs: list[Path]) -> Comparison:
    """Read every run (CheckpointError names one that cannot be read) and compare them."""
    from cnnspec.checker.checker import check
    from cnnspec.review.diff import diff_graphs
    from cnnspec.rundir.reader import open_run

    if len(runs) < 2:
        raise CnnspecError("runs compare needs at least two runs")
    _refuse_repeats(runs)
    labels = _labels(runs)
    compared = []
    for run, label in zip(runs, labels, strict=True):
        opened = open_run(run)
        graph = check(opened.spec)
        row = read_row(run)
        if row.status == DAMAGED:  # its curves and figures would be the damaged ones
            raise CnnspecError(
                f"{printable(str(run))} is damaged: {row.problem}", hint="compare runs whose records are whole"
            )
        compared.append(RunCompared(label, row, opened.spec, graph, read_history(opened.paths)))
    first = compared[0]
    # The architecture alone: the settings outside model: are the table below, for all the runs at once.
    diffs = [
        replace(diff_graphs(first.graph, other.graph, first.label, other.label), settings=[]) for other in compared[1:]
    ]
    flat = [flatten(c.spec.model_dump(mode="json", exclude={"model"})) for c in compared]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    settings = [(k, [f.get(k) for f in flat]) for k in keys if any(f.get(k) != flat[0].get(k) for f in flat)]
    return Comparison(compared, diffs, settings)


def _refuse_repeats(runs: list[Path]) -> None:
    """CnnspecError when two of `runs` are one folder (the same path, a link to it, `./RUN`): a run compared
    with itself shows no difference, which would read as two runs that agree."""
    seen: dict[tuple[int, int], Path] = {}
    for run in runs:
        try:
            st = os.stat(run)
        except OSError:
            continue  # open_run names a run that is not there
        first = seen.setdefault((st.st_dev, st.st_ino), run)
        if first is not run:
            same = "twice" if str(first) == str(run) else f"twice ({printable(str(first))} and {printable(str(run))})"
            raise CnnspecError(
                f"runs compare names the run {printable(str(first))} {same}", hint="name two or more different runs"
            )


def _labels(runs: list[Path]) -> list[str]:
    """The shortest tail of each run's path that tells it apart from the others."""
    parts = [run.resolve().parts for run in runs]
    for n in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-n:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(run) for run in runs]  # the same run twice
