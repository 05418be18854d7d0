"""Run directory → self-describing, gate-checked ONNX file."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from cnnspec.atomic import NotRegularFileError, atomic_path, dangling_link, write_target
from cnnspec.deploy.fp16 import fp16_weights
from cnnspec.deploy.gate import Parity, run_gate
from cnnspec.deploy.metadata import ModelMetadata, attach, color_of
from cnnspec.deploy.onnx_export import to_onnx
from cnnspec.deploy.shapes import annotate
from cnnspec.errors import ExportError
from cnnspec.pathnames import too_long, too_long_error
from cnnspec.preprocess import preprocessing_for
from cnnspec.rundir.files import own_path
from cnnspec.rundir.info import read_info
from cnnspec.rundir.lock import locked
from cnnspec.rundir.owner import enclosing_run, hard_link_into, owning_run
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.reader import TrainedModel, load_trained
from cnnspec.spec.dump import dump_spec
from cnnspec.terminal import printable
from cnnspec.version import __version__

# protobuf cannot serialise a single message of 2 GiB or more.
_PROTOBUF_LIMIT = 2**31 - 1


@dataclass
class ExportReport:
    """What `export_run` wrote and the figures of its gate."""

    path: Path
    metadata: ModelMetadata
    parity: list[Parity]
    bytes: int
    dynamo_error: str | None = None
    notes: list[str] = field(default_factory=list)


def metadata_for(trained: TrainedModel, exporter: str) -> ModelMetadata:
    """The metadata an exported run carries: preprocessing, classes, provenance."""
    info, spec = trained.info, trained.spec
    preprocessing = preprocessing_for(spec, info.mean, info.std)
    resize = list(preprocessing.image_size) if preprocessing.resize else None  # data.resize, for older readers
    settings = spec.export
    return ModelMetadata(
        input_shape=list(info.input_shape),
        class_names=list(info.class_names),
        mean=list(info.mean) if info.mean is not None else None,
        std=list(info.std) if info.std is not None else None,
        resize=resize,
        color=color_of(info.input_shape[0]),
        spec_name=info.spec_name,
        spec_hash=info.spec_hash,
        architecture_hash=info.architecture_hash,
        cnnspec_version=__version__,
        trained_with=info.cnnspec_version,
        run_id=info.run_id,
        dataset=info.dataset,
        exporter=exporter,
        weights_dtype="float16" if settings.fp16 else "float32",
        dynamic_batch=settings.dynamic_batch,
        opset=settings.opset,
        spec=dump_spec(spec),
        preprocessing=preprocessing,
    )


def _check_run(trained: TrainedModel) -> None:
    info, graph = trained.info, trained.graph
    if list(info.input_shape) != list(graph.input_shape):
        raise ExportError(
            f"{trained.paths.info}: input_shape {info.input_shape} does not match the spec's {list(graph.input_shape)}"
        )
    classes = graph.output_shape
    if len(classes) != 1:
        raise ExportError(
            f"the model's output is {'×'.join(map(str, classes))}, not a vector of class logits",
            hint="end the model with flatten and linear layers",
        )
    if len(info.class_names) != classes[0]:
        raise ExportError(
            f"{trained.paths.info} names {len(info.class_names)} classes but the model has {classes[0]} outputs"
        )


EXPORT_WRITES = ("model.onnx", "model.onnx.data")  # the run files an export writes


def inside_run(run: str | Path, target: str | Path) -> bool:
    """Whether `target` is a name in the run's folder (RUN/model.onnx, the default): the run's rule for
    its own files applies to it (cnnspec/rundir/files.py), where a path elsewhere follows its links."""
    return Path(os.path.realpath(Path(target).parent)) == Path(os.path.realpath(run))


def check_target(run: str | Path, target: str | Path, allowed: Collection[str] = EXPORT_WRITES) -> Path:
    """The file an export of `run` to `target` would replace (symlinks followed); ExportError when that
    is not a regular file or is one of the run's own files (its spec, record, metrics or checkpoints).
    In the run's own folder a link or a special file is refused (CheckpointError), never followed."""
    for path in (run, target):
        reason = too_long(path)
        if reason is not None:
            raise too_long_error(path, reason)
    if inside_run(run, target):
        own_path(Path(run), Path(run) / Path(target).name)  # the same file: its folder is the run's
    pointed = dangling_link(target)
    if pointed is not None:  # written through, it would create the file and its folders where the link points
        raise ExportError(
            f"cannot write {printable(str(target))}: it is a symbolic link to {printable(pointed)}, "
            "which does not exist",
            hint="--out writes through a link only to a file that exists: remove the link, or name another file",
        )
    try:
        final = write_target(target)
    except NotRegularFileError as exc:
        raise ExportError(
            f"cannot write {target}: {exc.strerror}", hint="give --out the path of an .onnx file (new or old)"
        ) from None
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
    # No file of the run being exported, nor of any other run, is replaced (its lock included: a
    # replaced lock would let two trains write one run), but the ones this command writes.
    linked = hard_link_into(Path(run), final)
    owner = owning_run(final, allowed) or ((Path(run), linked) if linked and linked not in allowed else None)
    if owner is not None:
        root, name = owner
        same = os.path.realpath(root) == os.path.realpath(run)
        whose = "the run being exported" if same else f"the run {printable(str(root))}"
        raise ExportError(
            f"refused to write {printable(str(target))}: it is {name} of {whose}; cnnspec writes a run's "
            "own files only from the command that owns them",
            hint=f"write to a new .onnx file, e.g. --out {Path(run) / sorted(allowed)[0]}"
            if allowed
            else "write to a new .onnx file",
        )
    # Then the rules for what is not a run's own file: no other run's folder, no file that is not a model.
    other = enclosing_run(final, run)
    if other is not None:  # another run's folder holds that run's own files only: a model there is taken for its own
        raise ExportError(
            f"refused to write {printable(str(target))}: it is inside the run {printable(str(other))}, not the run "
            f"being exported ({printable(str(run))}); a run's folder holds only that run's own files",
            hint=f"write outside any other run's folder, or leave out --out ({Path(run) / sorted(allowed)[0]})"
            if allowed
            else "write to a file outside any other run's folder",
        )
    own = inside_run(run, target) and Path(target).name in allowed
    if not own and final.is_file() and not is_onnx_model(final):
        raise ExportError(
            f"refused to replace {printable(str(target))}: it exists and is not an ONNX model",
            hint="an existing file is replaced only when it is an ONNX model; name a new file, or remove this one "
            "first if it may go",
        )
    return final


def is_onnx_model(path: Path) -> bool:
    """Whether the file at `path` reads as an ONNX model: a ModelProto with an IR version and a graph (its
    external data not read). The rule for replacing an existing file with an export: a spec, a notebook or a
    photo given to --out by mistake fails it at its first bytes (text is not a valid protobuf message)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends, or an unreadable file
        return False
    return model.ir_version > 0 and model.HasField("graph")


def export_run(run: str | Path, out: str | Path | None = None, which: str = "best") -> ExportReport:
    """Export a run's weights (`which`: best, falling back to last, said in the notes) to ONNX, gate it, and
    write it atomically. The run's spec.yaml must still be the network the weights were trained as.

    Nothing is written when the gate fails: the file is built and checked under a
    temporary name beside `out` and moved into place only afterwards.
    """
    target = Path(out) if out is not None else RunPaths(Path(run)).onnx
    check_target(run, target)  # before the export's seconds of work
    read_info(run)  # a folder that is not a run is refused before its lock file is made
    # Locked while the weights are read (and the file written): a run that a `train` is writing is
    # refused, naming it; an export into the run's own folder writes into it, so it locks it as a writer.
    with locked(run, "cnnspec export", shared=not inside_run(run, target)):
        return _export_locked(run, target, which)


def _export_locked(run: str | Path, target: Path, which: str) -> ExportReport:
    trained = load_trained(run, which)
    _check_run(trained)
    settings = trained.spec.export
    exported = to_onnx(trained.model, tuple(trained.info.input_shape), settings.opset, settings.dynamic_batch)
    model = exported.model
    if settings.fp16:
        fp16_weights(model)
    shapes = annotate(model, trained.graph)  # every layer's static output shape, for viewers such as Netron
    meta = metadata_for(trained, exported.exporter)
    if trained.spec.description:
        model.doc_string = trained.spec.description
    attach(model, meta)
    if model.ByteSize() >= _PROTOBUF_LIMIT:
        raise ExportError(
            f"the model needs {model.ByteSize() / 2**30:.1f} GiB, beyond a single ONNX file's 2 GiB",
            hint="models this large need external data files, which cnnspec export does not write yet",
        )
    try:
        with atomic_path(target) as tmp:
            onnx.save(model, str(tmp))
            parity = run_gate(tmp, trained.model, meta, fp16=settings.fp16, where=str(target))
            # Record the gate's figures in the file itself; the graph is unchanged.
            meta.parity = {"provider": "CPUExecutionProvider", "batches": [p.to_json() for p in parity]}
            attach(model, meta)
            onnx.save(model, str(tmp))
            size = tmp.stat().st_size
    except OSError as exc:  # a full disk or a read-only folder: the old file (if any) is unchanged
        raise ExportError(
            f"cannot write {target}: {exc.strerror or exc}", hint="free disk space, or choose a folder with --out"
        ) from None
    notes = []
    if trained.weights != which:
        notes.append(
            f"the run has no {which}.safetensors (it stopped inside its first epoch): exported its last weights"
        )
    if exported.dynamo_error:
        notes.append(f"the dynamo exporter failed ({exported.dynamo_error}); used the TorchScript exporter")
    notes += [f"shape not written to value_info, {line}" for line in shapes.disagreed]
    return ExportReport(target, meta, parity, size, exported.dynamo_error, notes)
