"""A run directory read back and checked: its record and spec still describe its weights."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnnspec.atomic import describe_mode
from cnnspec.errors import CheckpointError
from cnnspec.rundir.info import (
    RUN_ID_KEY,
    SERVING_KEY,
    RunInfo,
    architecture_hash,
    legacy_architecture_hash,
    read_info,
    serving_digest,
)
from cnnspec.rundir.paths import RunPaths
from cnnspec.terminal import printable

if TYPE_CHECKING:
    from cnnspec.builder.graph_module import SpecModule
    from cnnspec.checker.graph import Graph
    from cnnspec.spec.model import Spec


def ensure_architecture(info: RunInfo, spec: Spec, root: Path, *, resuming: bool) -> None:
    """CheckpointError unless `spec`'s architecture is the one the run in `root` trained (run.json's
    architecture_hash): `--resume` continues only the same network, and evaluate, export and bench
    load the weights only into the network they were trained as (the same shapes with another
    activation would load and answer wrongly)."""
    if info.architecture_hash in (architecture_hash(spec), legacy_architecture_hash(spec)):
        return
    if resuming:
        raise CheckpointError(
            f"cannot resume {root}: the spec's architecture (model:) differs from the one this run trained",
            hint="resume with the run's own spec.yaml, or train the changed model as a new run with --out NEW_DIR",
        )
    paths = RunPaths(root)
    raise CheckpointError(
        f"{paths.spec} does not describe the network this run's weights were trained as: its model: section "
        f"differs from the one recorded in {paths.info.name} (architecture_hash), so it was changed after training",
        hint=f"put back the spec.yaml the run was trained with; to train the changed model, run "
        f"`cnnspec train {paths.spec} --out NEW_DIR`",
    )


def ensure_record_fits(info: RunInfo, graph: Graph, paths: RunPaths) -> None:
    """CheckpointError when run.json's input shape or class names do not fit the spec's network."""
    if list(info.input_shape) != list(graph.input_shape):
        raise CheckpointError(
            f"{paths.info}: input_shape {info.input_shape} does not match the spec's {list(graph.input_shape)}"
        )
    out = graph.output_shape
    if len(out) == 1 and len(info.class_names) != out[0]:
        raise CheckpointError(f"{paths.info} names {len(info.class_names)} classes but the model has {out[0]} outputs")


@dataclass(frozen=True)
class OpenRun:
    """A run directory read back and checked: its record, its spec and the spec's graph."""

    paths: RunPaths
    info: RunInfo
    spec: Spec
    graph: Graph

    def weights_file(self, which: str = "best") -> tuple[str, Path]:
        """Which weights `which` gives and their file: best.safetensors, or last.safetensors when the run
        has no best one yet (stopped inside its first epoch)."""
        if which == "best" and not self.paths.weights("best").is_file() and self.paths.weights("last").is_file():
            return "last", self.paths.weights("last")
        return which, self.paths.weights(which)


def open_run(run: str | Path) -> OpenRun:
    """Read a run directory's run.json and spec.yaml and check that they still describe the weights."""
    from cnnspec.checker.checker import check
    from cnnspec.spec.load import load
    from cnnspec.spec.paths import absolute_paths

    paths = RunPaths(Path(run))
    info = read_info(run)
    if not paths.spec.is_file():
        if os.path.lexists(paths.spec):  # a FIFO (which would block a read), a folder, a dangling link
            raise CheckpointError(
                f"{paths.spec} is {_what(paths.spec)}, not a regular file: the run's spec cannot be read"
            )
        raise CheckpointError(f"{run} is not a cnnspec run directory (no spec.yaml)")
    spec = load(paths.spec)
    ensure_architecture(info, spec, paths.root, resuming=False)
    # train records absolute paths; a relative one (a run written by hand, or before) is the
    # spec.yaml's, relative to the run's folder, as in any spec (cnnspec.spec.paths).
    spec = absolute_paths(spec)
    graph = check(spec)
    ensure_record_fits(info, graph, paths)
    return OpenRun(paths, info, spec, graph)


def _what(path: Path) -> str:
    """What a name that is not a regular file is: 'a FIFO (named pipe)', 'a symbolic link to X (missing)'."""
    try:
        return describe_mode(os.stat(path).st_mode)
    except FileNotFoundError:
        return f"a symbolic link to {printable(os.readlink(path))}, which does not exist"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def ensure_served_as_trained(opened: OpenRun, weights: Path) -> None:
    """CheckpointError when run.json's class names or normalisation, or spec.yaml's preprocessing,
    are not those the weights were trained with (the digest training stored in their metadata):
    evaluate and export would otherwise believe a hand edit and answer with it."""
    from cnnspec.builder.weight_files import weights_metadata
    from cnnspec.preprocess import preprocessing_for

    if not weights.is_file():
        return  # the reader says there are no weights
    metadata = weights_metadata(weights)
    info = opened.info
    trained_by = metadata.get(RUN_ID_KEY)
    if trained_by is not None and info.run_id is not None and trained_by != info.run_id:
        raise CheckpointError(
            f"{weights} was trained by another run (run id {trained_by}), not by {opened.paths.root} "
            f"(run id {info.run_id}, in {opened.paths.info}): evaluating or exporting it here would report the "
            "other run's model as this one",
            hint="use the weights from the run that trained them (cnnspec evaluate/export THAT_RUN), or put back "
            "this run's own checkpoints",
        )
    stored = metadata.get(SERVING_KEY)
    if stored is None:  # weights from before the digest was stored, or from init_run
        return
    if stored != serving_digest(preprocessing_for(opened.spec, info.mean, info.std).to_json(), info.class_names):
        paths = opened.paths
        raise CheckpointError(
            f"{paths.info} or {paths.spec} no longer says how {weights.name} was trained: the class names, the "
            "normalisation (mean, std) or the preprocessing (data.resize, the evaluation crop) were changed after "
            "training",
            hint="put back the run.json and spec.yaml the run was trained with; to train with other values, "
            "start a new run with --out NEW_DIR",
        )


@dataclass
class TrainedModel:
    spec: Spec
    graph: Graph
    model: SpecModule  # eval mode, on the CPU
    info: RunInfo
    paths: RunPaths
    weights: str = "best"  # the weights loaded: "best", or "last" (asked for, or best did not exist)


def load_trained(run: str | Path | OpenRun, which: str = "best") -> TrainedModel:
    """The trained model of a run directory, weights loaded through safetensors only.

    `which` is "best" or "last"; a run without best.safetensors (stopped inside its first epoch)
    gives its last weights for "best", and `TrainedModel.weights` says which were loaded.
    """
    from cnnspec.builder.graph_module import build
    from cnnspec.rundir.weights import load_weights

    opened = run if isinstance(run, OpenRun) else open_run(run)
    model = build(opened.graph, pretrained=False)  # the run's own weights are loaded below
    used, weights = opened.weights_file(which)
    ensure_served_as_trained(opened, weights)
    load_weights(model, weights)
    model.eval()
    return TrainedModel(opened.spec, opened.graph, model, opened.info, opened.paths, used)
