"""Classify image files with an exported model on onnxruntime (no torch)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnspec.deploy.images import labelled_image_files, load_batch
from cnnspec.deploy.metadata import ModelMetadata, from_props, read_props
from cnnspec.deploy.session import Device, Session, open_session
from cnnspec.errors import DataError, ExportError

if TYPE_CHECKING:
    from cnnspec.metrics import Classification

DEFAULT_BATCH = 32


@dataclass
class ClassScore:
    index: int
    name: str
    probability: float  # softmax of the logits
    logit: float


@dataclass
class Prediction:
    file: str
    top: list[ClassScore]
    label: str | None = None  # the true class, when the image is in a labelled folder (ROOT/CLASS/*.png)

    @property
    def best(self) -> ClassScore:
        return self.top[0]


@dataclass
class PredictResult:
    model: Path
    provider: str
    predictions: list[Prediction]
    # Accuracy, confusion matrix, … of the labelled images (cnnspec/metrics.py); None when none is labelled.
    evaluation: Classification | None = None
    class_names: list[str] | None = None  # the model's classes: the confusion matrix's rows and columns

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": str(self.model),
            "provider": self.provider,
            "predictions": [
                {
                    "file": p.file,
                    **({"label": p.label} if p.label is not None else {}),
                    "top": [
                        {"index": s.index, "class": s.name, "probability": s.probability, "logit": s.logit}
                        for s in p.top
                    ],
                }
                for p in self.predictions
            ],
        }
        if self.evaluation is not None:
            out["evaluation"] = {"classes": self.class_names, **self.evaluation.to_json()}
        return out


def softmax(logits: np.ndarray) -> np.ndarray:  # (N, K) -> (N, K), rows sum to 1
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted.astype(np.float64))
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def model_metadata(session: Session) -> ModelMetadata:
    """The cnnspec metadata of an open model, checked against its graph (ExportError when it has
    none, when it is damaged or out of bounds, when the graph is not an image classifier, or when
    its preprocessing disagrees with its other keys or cannot be known)."""
    meta = from_props(read_props(session.model, str(session.path)), str(session.path))
    check_classifier(session, meta)
    meta.preprocessing = meta.image_preprocessing(str(session.path))  # older files: derived once, here
    return meta


def _dims(value: Any) -> list[int | str | None]:
    return list(value.shape) if isinstance(value.shape, list | tuple) else []


def check_classifier(session: Session, meta: ModelMetadata) -> None:
    """The graph takes one float32 (N, C, H, W) batch of the metadata's C×H×W and returns one float32
    (N, classes) matrix with one column per class name; ExportError saying what it has instead."""
    where = session.path
    inputs, outputs = session.session.get_inputs(), session.session.get_outputs()
    expected_in = f"one float32 input [N, {', '.join(map(str, meta.input_shape))}]"
    expected_out = f"one float32 output [N, {len(meta.class_names)}] (a logit per class name)"
    hint = "predict and bench run image classifiers exported by `cnnspec export`"
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ExportError(f"{where} has {len(inputs)} inputs ({names}); expected {expected_in}", hint=hint)
    if len(outputs) != 1:
        names = ", ".join(o.name for o in outputs)
        raise ExportError(f"{where} has {len(outputs)} outputs ({names}); expected {expected_out}", hint=hint)
    x, y = inputs[0], outputs[0]
    dims = _dims(x)
    if x.type != "tensor(float)" or len(dims) != 4 or dims[1:] != meta.input_shape:
        raise ExportError(f"{where}: its input is {x.type} {dims}; expected {expected_in}", hint=hint)
    out = _dims(y)
    classes = out[1] if len(out) == 2 else None
    if y.type != "tensor(float)" or len(out) != 2 or (isinstance(classes, int) and classes != len(meta.class_names)):
        raise ExportError(f"{where}: its output is {y.type} {out}; expected {expected_out}", hint=hint)


def run_batches(
    session: Session, x: np.ndarray, classes: int, batch_size: int = DEFAULT_BATCH, stoppable: bool = True
) -> np.ndarray:
    """Logits for all of `x` (N, C, H, W), fed in batches the model accepts (`stoppable`: see Session.run).

    Every batch's output is checked to be one row per image and `classes` columns (one per class name of
    the metadata): a graph that declares [N, 2] may return any width at run time, and a column without a
    name (or a name without a column) would be a silent wrong answer. predict, bench, quantize and serve
    all read logits through here."""
    step = session.static_batch or batch_size
    outputs = []
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        real = len(chunk)
        if session.static_batch is not None and real < step:  # pad a fixed batch axis, drop the padding after
            chunk = np.concatenate([chunk, np.zeros((step - real, *chunk.shape[1:]), dtype=chunk.dtype)])
        outputs.append(check_logits(session.run(chunk, stoppable), len(chunk), classes, session.path)[:real])
    return np.concatenate(outputs) if outputs else np.zeros((0, classes), dtype=np.float32)


def check_logits(got: np.ndarray, batch: int, classes: int, where: str | Path) -> np.ndarray:
    """`got` when it is the (batch, classes) matrix of logits a run on `batch` images must return;
    ExportError naming what the model really returned otherwise."""
    if got.ndim != 2 or got.shape[0] != batch:
        raise ExportError(
            f"{where} returned an output of shape {list(got.shape)} for a batch of {batch}; "
            "expected one row of logits per image"
        )
    if got.shape[1] != classes:
        columns = f"{got.shape[1]} logit{'' if got.shape[1] == 1 else 's'}"
        raise ExportError(
            f"{where} returned {columns} per image, but its metadata names {classes} "
            f"class{'' if classes == 1 else 'es'} (class_names): no answer can be given",
            hint="the graph's real output does not match its declared shape or its metadata (changed after "
            "`cnnspec export`?): export the run again",
        )
    return got


def predict(
    model: str | Path,
    inputs: Iterable[str | Path],
    top_k: int = 5,
    device: Device = "auto",
    batch_size: int = DEFAULT_BATCH,
) -> PredictResult:
    """Top-k classes of each image (files, or folders of images) with the exported model at `model`.

    Images of a labelled folder (ROOT/CLASS/*.png) are also measured against their class: the result's
    `evaluation` has their accuracy, confusion matrix, per-class precision/recall/F1 and top-5, as
    `cnnspec evaluate` reports them."""
    session = open_session(model, device)
    meta = model_metadata(session)
    files = labelled_image_files(inputs)
    _check_labels(files, meta)
    results: list[Prediction] = []
    truth: list[int] = []
    scores: list[np.ndarray] = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        logits = run_batches(session, load_batch([f for f, _ in chunk], meta), len(meta.class_names), batch_size)
        finite = np.isfinite(logits).all(axis=1)
        if not finite.all():  # no class can be named from NaN or inf: say so, never rank them
            file = chunk[int(np.argmin(finite))][0]
            raise ExportError(
                f"{model}: the model's outputs are not finite (NaN or inf) for {file}",
                hint="its weights are damaged or its training diverged: evaluate the run it was exported "
                "from (cnnspec evaluate RUN) and export it again",
            )
        probabilities = softmax(logits)
        for (file, label), row, probs in zip(chunk, logits, probabilities, strict=True):
            results.append(Prediction(str(file), top_classes(row, probs, meta, top_k), label))
            if label is not None:
                truth.append(meta.class_names.index(label))
                scores.append(probs)
    evaluation = None
    if truth:
        from cnnspec.metrics import classify

        stacked = np.stack(scores)
        evaluation = classify(np.array(truth), stacked.argmax(axis=1), meta.class_names, stacked)
    return PredictResult(Path(model), session.provider, results, evaluation, list(meta.class_names))


def _check_labels(files: list[tuple[Path, str | None]], meta: ModelMetadata) -> None:
    """A labelled folder's class folders are named for the model's classes: DataError naming one that is not."""
    known = set(meta.class_names)
    for file, label in files:
        if label is not None and label not in known:
            shown = ", ".join(meta.class_names[:20]) + (", …" if len(meta.class_names) > 20 else "")
            raise DataError(
                f"{file.parent} is not a class of the model: its folder name {label!r} is none of {shown}",
                hint="name each subfolder of a labelled folder for the class of its images (ROOT/CLASS/*.png)",
            )


def top_classes(logits: np.ndarray, probabilities: np.ndarray, meta: ModelMetadata, top_k: int) -> list[ClassScore]:
    """The `top_k` classes (at least 1, at most all) of one image's logits (K,) and softmax (K,), most
    probable first (ties in class order): what predict and serve answer."""
    k = max(1, min(top_k, logits.shape[0]))
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [ClassScore(int(i), _name(meta, int(i)), float(probabilities[i]), float(logits[i])) for i in order]


def _name(meta: ModelMetadata, index: int) -> str:
    return meta.class_names[index] if index < len(meta.class_names) else str(index)
