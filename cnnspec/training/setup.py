"""Everything before the first step: the resolved spec, the run directory, data, normalisation.

A fresh run writes spec.yaml, run.json and samples/ here; a resumed run reads them back
and refuses to continue when the architecture changed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnspec.atomic import atomic_write_text, remove_stale_temporaries
from cnnspec.checker.checker import check
from cnnspec.checker.graph import Graph
from cnnspec.errors import CheckpointError, DataError, Diagnostic, ShapeError, SpecError
from cnnspec.run import LOCK_NAME, RunInfo, RunLock, RunPaths, architecture_hash, is_run, read_info, spec_hash
from cnnspec.spec.dump import dump_spec
from cnnspec.spec.model import Normalize, Spec
from cnnspec.spec.overrides import load_with_overrides, override_spec
from cnnspec.spec.source import read_spec_text
from cnnspec.training.checkpoint import Checkpoints, writing
from cnnspec.training.datasets import DataBundle, load_data
from cnnspec.training.progress import Reporter
from cnnspec.training.records import write_json, write_samples, written_samples
from cnnspec.training.sources import FolderSource, Source, TensorSource, channel_stats
from cnnspec.version import __version__

SAMPLE_IMAGES = 8

# The files cnnspec writes in a run directory; a fresh run removes these (and only these) first,
# with the checkpoints below and the sample images write_samples names.
_RUN_FILES = (
    "spec.yaml",
    "run.json",
    "metrics.jsonl",
    "result.json",
    "curves.png",
    "model.onnx",
    "model.onnx.data",
    "evaluation.json",
    "confusion_matrix.png",
)
_CHECKPOINT_FILES = ("last.safetensors", "best.safetensors", "last.state.pt")


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

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def default_out(spec: Spec) -> Path:
    """runs/<spec name>, the name made safe for a folder."""
    return Path("runs") / (re.sub(r"[^A-Za-z0-9._-]+", "-", spec.name).strip("-.") or "run")


def resolve_spec(
    spec_or_path: Spec | str | Path | None, resume: Path | None, overrides: Sequence[str]
) -> tuple[Spec, str]:
    """The spec to train (overrides applied) and the YAML text that records it in the run."""
    if spec_or_path is None:
        if resume is None:
            raise SpecError("nothing to train: give a spec file, or --resume RUN")
        spec_or_path = RunPaths(resume).spec
        if not Path(spec_or_path).is_file():
            raise CheckpointError(f"{resume} is not a cnnspec run directory (no spec.yaml)")
    if not isinstance(spec_or_path, Spec):
        spec = load_with_overrides(spec_or_path, overrides)
        # Without overrides the file itself is the record, comments and all.
        return spec, dump_spec(spec) if overrides else read_spec_text(spec_or_path)
    spec = override_spec(spec_or_path, overrides)
    return spec, dump_spec(spec)


def prepare(
    spec_or_path: Spec | str | Path | None,
    out: str | Path | None,
    resume: str | Path | None,
    overrides: Sequence[str],
    reporter: Reporter,
) -> Session:
    """Resolve the spec, load the data and set up (or reopen) the run directory, locked for this process."""
    resume_dir = Path(resume) if resume is not None else None
    spec, text = resolve_spec(spec_or_path, resume_dir, overrides)
    graph = check(spec)
    if spec.data is None:
        raise DataError(
            Diagnostic(
                "the spec has no data section; training needs one",
                spec.source.locate(()),
                hint="add `data: {dataset: {name: digits}}` (or cifar10, image_folder, …)",
            )
        )
    root = resume_dir if resume_dir is not None else Path(out) if out is not None else default_out(spec)
    paths = RunPaths(root)
    if resume_dir is None:
        _refuse_foreign_folder(paths)
    else:
        read_info(root)  # a folder that is not a run is refused before a lock file is made in it
    with writing(root):
        lock = RunLock(root, "cnnspec train").acquire()
    try:
        return _prepare_locked(spec, text, graph, paths, resume_dir, reporter, lock)
    except BaseException:
        lock.release()
        raise


def _prepare_locked(
    spec: Spec, text: str, graph: Graph, paths: RunPaths, resume_dir: Path | None, reporter: Reporter, lock: RunLock
) -> Session:
    assert spec.data is not None
    root = paths.root
    previous = read_info(root) if resume_dir is not None else None
    if previous is not None and previous.architecture_hash != architecture_hash(spec):
        raise CheckpointError(
            f"cannot resume {root}: the spec's architecture (model:) differs from the one this run trained",
            hint="resume with the run's own spec.yaml, or train the changed model as a new run with --out NEW_DIR",
        )
    data = load_data(spec)
    _check_classes(spec, graph, data.class_names)
    resume_state: dict[str, Any] | None = None
    if previous is not None:
        if previous.class_names != data.class_names:
            raise CheckpointError(
                f"cannot resume {root}: the dataset's classes differ from the run's ({previous.dataset})"
            )
        # Read and verified before spec.yaml or run.json is rewritten: a refused resume changes nothing.
        resume_state = Checkpoints(paths, previous).read()
        mean, std = previous.mean, previous.std
    else:
        with writing(root):
            _clear_previous_run(paths, reporter)
        mean, std = _normalization(spec, data.train, reporter)
    info = RunInfo(
        spec_name=spec.name,
        spec_hash=spec_hash(spec),
        architecture_hash=architecture_hash(spec),
        cnnspec_version=__version__,
        input_shape=list(spec.model.input.shape),
        class_names=data.class_names,
        mean=mean,
        std=std,
        dataset=spec.data.dataset.name,
    )
    if previous is None or previous.spec_hash != info.spec_hash:
        if previous is not None:
            reporter.message(f"resuming {root} with a changed spec (same architecture); spec.yaml updated")
        with writing(paths.spec):
            paths.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(paths.spec, text)
        write_json(paths.info, info.model_dump(mode="json"))
    if previous is None and data.test is not None:
        _samples(paths, data.test, data.class_names)
    with writing(paths.checkpoints):
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(paths.checkpoints)
        remove_stale_temporaries(paths.root)
    return Session(spec, graph, paths, data, info, resumed=previous is not None, lock=lock, resume_state=resume_state)


def _check_classes(spec: Spec, graph: Graph, class_names: list[str]) -> None:
    out = graph.output_shape
    node = graph.node(graph.output) if graph.nodes else None
    where = node.location if node is not None else spec.source.locate(("model", "layers"))
    if len(out) != 1:
        raise ShapeError(
            Diagnostic(
                f"the model ends in a {'×'.join(map(str, out))} tensor; a classifier ends in one score per class",
                where,
                hint=f"end with `- flatten` (or global_avgpool) and `- linear: {{out_features: {len(class_names)}}}`",
            )
        )
    if out[0] != len(class_names):
        assert spec.data is not None
        raise ShapeError(
            Diagnostic(
                f"the model outputs {out[0]} class scores but {spec.data.dataset.name} has {len(class_names)} classes",
                where,
                hint=f"set out_features: {len(class_names)} on the last layer",
            )
        )


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
    reporter.message(f"replacing the previous run in {root}")
    samples = root / "samples"
    written = [root / name for name in _RUN_FILES] + [paths.checkpoints / name for name in _CHECKPOINT_FILES]
    for path in [*written, *(written_samples(samples) if samples.is_dir() else [])]:
        if path.is_file() or path.is_symlink():
            path.unlink()
    for folder in (paths.checkpoints, samples):
        if folder.is_dir():
            remove_stale_temporaries(folder)
            with contextlib.suppress(OSError):  # kept when it holds files of the user's
                folder.rmdir()


def _samples(paths: RunPaths, test: Source, class_names: list[str]) -> None:
    """A few test images (the first of each class, then the next ones) as PNGs in RUN/samples/."""
    if isinstance(test, TensorSource):
        labels = test.labels.tolist()
    elif isinstance(test, FolderSource):
        labels = [label for _, label in test.items]
    else:
        return
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
    images = [(*test.sample(i), i) for i in sorted(picked)]
    write_samples(paths.root / "samples", images, class_names)
