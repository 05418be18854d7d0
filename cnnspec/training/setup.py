"""Everything before the first step: the resolved spec, the run directory, data, normalisation.

Every check that can refuse a run comes first and writes nothing; then the run directory is
locked and a fresh run writes spec.yaml, run.json and samples/ here, while a resumed run reads
them back (refused when the architecture changed) and continues.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnspec.atomic import remove_stale_temporaries
from cnnspec.checker.checker import analyse, check
from cnnspec.checker.data import class_problems, no_data_section
from cnnspec.checker.graph import Graph, Node
from cnnspec.errors import (
    CheckpointError,
    CnnspecError,
    DataError,
    Diagnostic,
    ShapeError,
    SpecError,
    TrainingError,
    error_for,
)
from cnnspec.pathnames import ensure_fits
from cnnspec.rundir.files import ensure_own_files, make_run_folder, write_run_file, writing
from cnnspec.rundir.info import RunInfo, is_run, read_info, write_info
from cnnspec.rundir.lock import RunLock
from cnnspec.rundir.paths import LOCK_NAME, RunPaths
from cnnspec.rundir.reader import ensure_architecture
from cnnspec.spec.dump import dump_spec
from cnnspec.spec.model import Normalize, Spec
from cnnspec.spec.overrides import caused_by_overrides, loads_with_overrides, override_spec
from cnnspec.spec.paths import absolute_paths
from cnnspec.spec.source import read_spec_text
from cnnspec.terminal import printable
from cnnspec.training.checkpoint import Checkpoints
from cnnspec.training.datasets import DataBundle, load_data
from cnnspec.training.progress import Reporter
from cnnspec.training.records import read_metrics, sample_name, write_metrics, write_samples
from cnnspec.training.resume_changes import ensure_resumable_changes, ensure_same_preprocessing, recorded_spec
from cnnspec.training.sources import FolderSource, Source, TensorSource, channel_stats
from cnnspec.training.state import BestEpoch, rescore_best

SAMPLE_IMAGES = 8


@dataclass
class Session:
    """A run ready to train: the spec, its graph, the data, and the run directory."""

    spec: Spec
    graph: Graph
    paths: RunPaths
    data: DataBundle
    info: RunInfo
    resumed: bool
    lock: RunLock | None = None  # held by the process that writes the run (rank 0) until training ends
    resume_state: dict[str, Any] | None = None  # the verified training state a resumed run continues from
    model: Any = None  # the model built while checking (CPU), for the loop to train; None: the loop builds it
    history: list[dict[str, Any]] = field(default_factory=list)  # a resumed run's metrics.jsonl records, checked

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def default_out(spec: Spec) -> Path:
    """runs/<spec name>, the name made safe for a folder."""
    return Path("runs") / (re.sub(r"[^A-Za-z0-9._-]+", "-", spec.name).strip("-.") or "run")


@dataclass(frozen=True)
class SpecText:
    """A spec file's text, read once: a pipe (`<(make-spec)`) gives its text to one read only."""

    file: str
    text: str


SpecInput = Spec | SpecText | str | Path | None


def read_spec_file(spec_or_path: SpecInput) -> Spec | SpecText | None:
    """A path's text read now (train reads it before it routes Ctrl-C and SIGTERM to a stop flag,
    so that either ends a wait on a pipe at once); a Spec or None as it is."""
    if isinstance(spec_or_path, str | Path):
        return SpecText(str(spec_or_path), read_spec_text(spec_or_path))
    return spec_or_path


def resolve_spec(spec_or_path: SpecInput, resume: Path | None, overrides: Sequence[str]) -> tuple[Spec, str]:
    """The spec to train (overrides applied) and the YAML text that records it in the run."""
    if spec_or_path is None:
        if resume is None:
            raise SpecError("nothing to train: give a spec file, or --resume RUN")
        spec_or_path = RunPaths(resume).spec
        if not Path(spec_or_path).is_file():
            raise CheckpointError(f"{resume} is not a cnnspec run directory (no spec.yaml)")
    spec_or_path = read_spec_file(spec_or_path)
    if isinstance(spec_or_path, SpecText):
        written = loads_with_overrides(spec_or_path.text, spec_or_path.file, overrides)
        # The paths it names, absolute (relative ones are the spec folder's), so that the run finds the
        # same files from any folder. Without overrides or such paths the file itself is the record,
        # comments and all.
        spec = absolute_paths(written)
        return spec, dump_spec(spec) if overrides or spec is not written else spec_or_path.text
    assert spec_or_path is not None
    spec = absolute_paths(override_spec(spec_or_path, overrides))
    return spec, dump_spec(spec)


def prepare(
    spec_or_path: SpecInput,
    out: str | Path | None,
    resume: str | Path | None,
    overrides: Sequence[str],
    reporter: Reporter,
    processes: int = 1,
) -> Session:
    """Resolve the spec, check everything that can refuse the run, then set up (or reopen) the run
    directory, locked for this process (`processes`: how many share the training set, under torchrun).

    Nothing is written before the checks have passed (the spec, the data with its memory estimate
    and every image header, the classes, normalisation, the model with its pretrained weights, and on
    a resume the saved state): a refused `train` leaves --out absent, or as it was.
    """
    resume_dir = Path(resume) if resume is not None else None
    spec, text = resolve_spec(spec_or_path, resume_dir, overrides)
    graph = check(spec)
    if resume_dir is None and spec.model.weights is not None:
        from cnnspec.builder.graph_module import build

        build(graph)  # model.weights read and fitted now: a refused file leaves no run directory behind
    if spec.data is None:
        raise DataError(no_data_section(spec))
    root = resume_dir if resume_dir is not None else Path(out) if out is not None else default_out(spec)
    ensure_fits(root)  # runs/<a 300-character spec name>, say
    paths = RunPaths(root)
    previous: RunInfo | None = None
    if resume_dir is None:
        _refuse_foreign_folder(paths)
    else:
        previous = read_info(root)  # a folder that is not a run is refused before anything else
        ensure_architecture(previous, spec, root, resuming=True)
        recorded = recorded_spec(paths.spec, root)
        ensure_resumable_changes(recorded, spec, root)
        ensure_same_preprocessing(recorded, spec, root)
    # Every name the run writes (or a fresh run replaces) is its own: a link out of the run is refused
    # before anything is written or deleted (cnnspec/rundir/files.py).
    ensure_own_files(root, paths.owned())
    lock = RunLock(root, "cnnspec train")
    try:
        if paths.lock.is_file():
            # Taking an existing lock file creates nothing: a live holder is named before the checks' work.
            with writing(root):
                lock.acquire()
        checked = _check_run(spec, graph, root, previous, reporter, processes)
        if not lock.held:
            with writing(root):
                lock.acquire()  # creates the folder and its lock file: the first write
        return _prepare_locked(spec, text, graph, paths, previous, checked, reporter, lock)
    except BaseException:
        lock.release()
        raise


@dataclass
class _Checked:
    """What the checks before any write produced: the data, normalisation and the built model."""

    data: DataBundle
    mean: list[float] | None
    std: list[float] | None
    model: Any  # SpecModule on the CPU (torch imported by build)
    samples: list[int]  # the test images a fresh run saves in RUN/samples/


def _check_run(
    spec: Spec, graph: Graph, root: Path, previous: RunInfo | None, reporter: Reporter, processes: int
) -> _Checked:
    """Every check that can refuse the run and needs no lock: nothing is written here."""
    import torch

    from cnnspec.builder.graph_module import build

    assert spec.data is not None
    data = load_data(spec, processes=processes)  # the memory estimate, the batch statistics, every image header
    for note in data.notes:  # data.cache: memory or streaming, and what the disk cache did
        reporter.message(note)
    _check_classes(spec, graph, data.class_names)
    if previous is not None and previous.class_names != data.class_names:
        raise CheckpointError(f"cannot resume {root}: the dataset's classes differ from the run's ({previous.dataset})")
    check_unfreeze(spec, graph)
    if previous is not None:
        mean, std = previous.mean, previous.std  # resuming reads them back rather than recomputing
    else:
        mean, std = _normalization(spec, data.train, reporter)
    # Built here (model.weights and torchvision weights read, a plugin's builder run) so that a file
    # that cannot be loaded is refused before the run directory is written. The random seed is set right
    # before, as the training loop always did: the same initial weights and random stream.
    torch.manual_seed(spec.train.seed)
    model = build(graph, pretrained=previous is None)  # a resumed run continues from its own weights
    _check_layout(spec, graph, model)
    labels = _test_labels(data.test) if previous is None else []  # a resumed run keeps the samples it has
    samples = _pick_samples(labels)
    for index in samples:  # names made from the data (class folder names) fit before anything is written
        ensure_fits(RunPaths(root).samples / sample_name(data.class_names[labels[index]], index))
    return _Checked(data, mean, std, model, samples)


def _check_layout(spec: Spec, graph: Graph, model: Any) -> None:
    """train.channels_last: true with a plugin layer (auto leaves those in the default layout): one
    forward pass of two zero images in that layout now, so that a plugin that cannot take it (`x.view`)
    is refused in one line before the run directory is written, not with a traceback at the first step."""
    import torch

    if spec.train.channels_last is not True or not graph.has_plugin_layers:
        return
    model.eval()
    try:
        with torch.no_grad():
            model.to(memory_format=torch.channels_last)(
                torch.zeros(2, *graph.input_shape).contiguous(memory_format=torch.channels_last)
            )
    except Exception as exc:  # a plugin's own code: any error it raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(
            Diagnostic(
                f"the model fails in the channels-last memory format: {first}",
                spec.source.locate(("train", "channels_last")),
                hint="a plugin layer's code may assume the default layout (x.view: use x.reshape); "
                "set train.channels_last: auto (or false) to train it in the default layout",
            )
        ) from None
    finally:
        model.train()


def frozen_nodes(graph: Graph) -> list[Node]:
    """The layers that do not train until train.unfreeze (a torchvision backbone with freeze: true)."""
    return [n for n in graph.nodes if not n.layer.trainable()]


def check_unfreeze(spec: Spec, graph: Graph) -> None:
    """train.unfreeze needs a frozen layer to unfreeze."""
    if spec.train.unfreeze is not None and not frozen_nodes(graph):
        raise TrainingError(
            Diagnostic(
                "train.unfreeze is set but no torchvision layer has freeze: true",
                spec.source.locate(("train", "unfreeze")),
                hint="freeze a backbone (`- torchvision: {model: resnet18, freeze: true}`) or remove train.unfreeze",
            )
        )


def _prepare_locked(
    spec: Spec,
    text: str,
    graph: Graph,
    paths: RunPaths,
    previous: RunInfo | None,
    checked: _Checked,
    reporter: Reporter,
    lock: RunLock,
) -> Session:
    assert spec.data is not None
    root = paths.root
    data = checked.data
    resume_state: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    if previous is not None:
        # Read and verified under the lock, before spec.yaml or run.json is rewritten: a refused
        # resume changes nothing.
        resume_state = Checkpoints(paths, previous).read()
        log = read_metrics(paths, int(resume_state["epoch"]))  # every line checked, before a step
        rule = BestEpoch.from_spec(spec.train.early_stopping)
        rescored = rescore_best(resume_state, rule, _tracked_metric(resume_state, paths), log.records)
        _check_resumable(spec, root, resume_state)
        if resume_state.get("lr_plan") is None:  # an older state: its plan is the epochs of the spec it trained with
            resume_state["lr_plan"] = _planned(paths)
        history = log.records
        if log.damaged:  # the checkpoint is what a resume needs; the log is rewritten from what is left of it
            write_metrics(paths, history)
        for note in (log.note(paths.metrics), rescored):
            if note:
                reporter.message(note)
    info = RunInfo.for_spec(
        spec, input_shape=spec.model.input.shape, class_names=data.class_names, mean=checked.mean, std=checked.std
    )
    if previous is not None:  # a resume is the same run: its id stays (None for a run from before ids)
        info = info.model_copy(update={"run_id": previous.run_id})
    if previous is None:
        with writing(root):
            _clear_previous_run(paths, reporter)
    elif resume_state is not None and _will_train(spec, resume_state):
        _remove_stale_outputs(paths, reporter)
    if previous is None or previous.spec_hash != info.spec_hash:
        if previous is not None:
            reporter.message(f"resuming {printable(root)} with a changed spec (same architecture); spec.yaml updated")
        write_run_file(root, paths.spec, text)
        write_info(paths, info)
    if previous is None and data.test is not None:
        _samples(paths, data.test, data.class_names, checked.samples)
    make_run_folder(root, paths.checkpoints)
    with writing(paths.checkpoints):
        remove_stale_temporaries(paths.checkpoints)
        remove_stale_temporaries(paths.root)
    return Session(
        spec,
        graph,
        paths,
        data,
        info,
        resumed=previous is not None,
        lock=lock,
        resume_state=resume_state,
        model=checked.model,
        history=history,
    )


def _will_train(spec: Spec, state: dict[str, Any]) -> bool:
    """Whether resuming from `state` takes a step (a finished run only re-tests its best weights)."""
    return int(state["epoch"]) < spec.train.epochs and not (
        state["stopped_early"] and BestEpoch.from_spec(spec.train.early_stopping).stops(int(state["bad_epochs"]))
    )


def _check_resumable(spec: Spec, root: Path, state: dict[str, Any]) -> None:
    """Refuse to resume an early-stopped run for more epochs when its early stopping would stop it again.

    The count of epochs without an improvement carries on (as in one run trained with the resumed
    spec): raising the patience above it, or turning early stopping off, continues the run.
    """
    epoch, bad = int(state["epoch"]), int(state["bad_epochs"])
    rule = BestEpoch.from_spec(spec.train.early_stopping)
    if not state["stopped_early"] or epoch >= spec.train.epochs or not rule.stops(bad):
        return
    best = f" (best epoch {state['best_epoch']})" if state.get("best_epoch") else ""
    raise CheckpointError(
        Diagnostic(
            f"cannot resume {root} for more epochs: it stopped early after epoch {epoch} of {spec.train.epochs}, "
            f"{rule.metric} had not improved for {bad} epochs{best}, and with patience {rule.patience} "
            "it would stop again before a step",
            spec.source.locate(("train", "early_stopping")),
            hint=f"to train on, raise the patience above {bad} "
            f"(--set train.early_stopping.patience={bad + (rule.patience or 0)}) or turn early stopping off "
            f"(--set train.early_stopping=null); the count of epochs without an improvement carries on from {bad}",
        )
    )


def _tracked_metric(state: dict[str, Any], paths: RunPaths) -> str | None:
    """The metric the saved state's best is a value of: recorded in the state, or (older states) the one
    of the run's spec.yaml, still the spec the state was trained with here; None when neither says."""
    if isinstance(state.get("metric"), str):
        return str(state["metric"])
    from cnnspec.spec.load import load

    try:
        trained = load(paths.spec)
    except CnnspecError:
        return None
    return BestEpoch.from_spec(trained.train.early_stopping).metric


def _planned(paths: RunPaths) -> list[dict[str, Any]] | None:
    """The learning-rate plan of a state written before cnnspec recorded it: train.epochs of the run's
    spec.yaml (still the spec the state was trained with here); None when it cannot be read."""
    from cnnspec.spec.load import load

    try:
        trained = load(paths.spec)
    except CnnspecError:
        return None
    return [{"from_epoch": 0.0, "epochs": trained.train.epochs}]


# What `cnnspec export` and `cnnspec evaluate` write into the run by default, from its weights.
_FROM_WEIGHTS = (
    ("export", "exported from", ("model.onnx", "model.onnx.data")),
    ("evaluate", "measured on", ("evaluation.json", "confusion_matrix.png")),
)


def _remove_stale_outputs(paths: RunPaths, reporter: Reporter) -> None:
    """A resume that trains changes the weights: RUN/model.onnx would answer, and RUN/evaluation.json
    and confusion_matrix.png report, the old ones. They are cnnspec's own files (names a fresh run
    replaces too), so they go, and a line says so for each command to run again."""
    for command, what, names in _FROM_WEIGHTS:
        stale = [p for p in (paths.root / n for n in names) if p.is_file() or p.is_symlink()]
        if not stale:
            continue
        with writing(stale[0]):
            for path in stale:
                path.unlink()
        shown = " and ".join(str(p) for p in stale)
        reporter.message(
            f"removed {shown}: {'they were' if len(stale) > 1 else 'it was'} {what} the weights before this "
            f"resume; run `cnnspec {command}` again when training ends"
        )
    # result.json says the run is done, with the old test accuracy: a resume stopped before it ends (a
    # kill, a full disk) would leave it beside newer weights. Training writes it again when it ends.
    if paths.result.is_file() or paths.result.is_symlink():
        with writing(paths.result):
            paths.result.unlink()


def _check_classes(spec: Spec, graph: Graph, class_names: list[str]) -> None:
    """The model's output must be one score per class the dataset has (the check `validate` makes
    statically where the dataset's class count is known: here with the classes loaded); a problem a
    `--set` brought is located at that `--set`."""
    if not graph.nodes:
        raise ShapeError(Diagnostic("the model has no layers", spec.source.locate(("model", "layers"))))
    problems = class_problems(graph, len(class_names))
    if problems:

        def recheck(fewer: Spec) -> list[Diagnostic]:
            fewer_graph, found = analyse(fewer, locate_overrides=False)
            if any(d.severity == "error" for d in found):
                raise error_for(found)  # that spec stops before its classes are checked
            return class_problems(fewer_graph, len(class_names))

        raise ShapeError(caused_by_overrides(spec, problems, recheck))


def _normalization(spec: Spec, train: Source, reporter: Reporter) -> tuple[list[float] | None, list[float] | None]:
    assert spec.data is not None
    setting = spec.data.normalize
    channels = spec.model.input.channels
    if setting == "none":
        return None, None
    if isinstance(setting, Normalize):
        for key, values in (("mean", setting.mean), ("std", setting.std)):
            if len(values) != channels:
                raise DataError(
                    Diagnostic(
                        f"data.normalize.{key} has {len(values)} values but the images have {channels} channels",
                        spec.source.locate(("data", "normalize", key)),
                        hint=f"give one value per channel ({channels})",
                    )
                )
        return list(setting.mean), list(setting.std)
    return channel_stats(train, warn=reporter.message)


def _refuse_foreign_folder(paths: RunPaths) -> None:
    """A fresh run goes into a new folder, an empty one, or one that holds a cnnspec run."""
    root = paths.root
    if root.is_symlink() and not root.exists():
        raise CheckpointError(
            f"--out {root} is a symbolic link to {os.readlink(root)}, which does not exist",
            hint="create the folder it points to, or give --out a new folder",
        )
    if root.exists() and not root.is_dir():
        raise CheckpointError(f"--out {root} is a file, not a folder")
    if not root.is_dir() or is_run(root) or all(p.name == LOCK_NAME for p in root.iterdir()):
        return
    why = " (its run.json is not a cnnspec run record)" if paths.info.exists() else ""
    raise CheckpointError(
        f"--out {root} is a non-empty folder that is not a cnnspec run{why}; nothing in it was touched",
        hint="choose a new or empty folder for the run",
    )


def _clear_previous_run(paths: RunPaths, reporter: Reporter) -> None:
    """Remove the files an earlier run wrote here; whatever else the folder holds stays."""
    root = paths.root
    if not is_run(root):
        return
    reporter.message(f"replacing the previous run in {printable(root)}")
    # Every one of these names was checked to be a regular file or absent (ensure_own_files), so an
    # unlink removes the run's own file, never one a link leads to.
    folders = (paths.checkpoints, paths.samples)
    for path in paths.owned():
        if path not in folders and path != paths.lock and path.is_file():
            path.unlink()
    for folder in folders:
        if folder.is_dir():
            remove_stale_temporaries(folder)
            with contextlib.suppress(OSError):  # kept when it holds files of the user's
                folder.rmdir()


def _test_labels(test: Source | None) -> list[int]:
    """The label of every test image, for the ones RUN/samples/ gets (none for other sources)."""
    if isinstance(test, TensorSource):
        return [int(label) for label in test.labels.tolist()]
    if isinstance(test, FolderSource):
        return [label for _, label in test.items]
    return []


def _pick_samples(labels: list[int]) -> list[int]:
    """The test images RUN/samples/ gets: the first of each class, then the next ones, SAMPLE_IMAGES in all."""
    picked: list[int] = []
    seen: set[int] = set()
    for i, label in enumerate(labels):
        if label not in seen:
            seen.add(label)
            picked.append(i)
        if len(picked) == SAMPLE_IMAGES:
            break
    for i in range(len(labels)):
        if len(picked) >= SAMPLE_IMAGES:
            break
        if i not in picked:
            picked.append(i)
    return sorted(picked)


def _samples(paths: RunPaths, test: Source, class_names: list[str], picked: list[int]) -> None:
    """A few test images (`_pick_samples`) as PNGs in RUN/samples/."""
    images = [(*test.sample(i), i) for i in picked]
    write_samples(paths, images, class_names)
